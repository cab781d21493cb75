"""Is the improvement over a baseline ≥ 0.005 nats at p < 0.01? The challenge's record rule, computed.

The test is one-sided on per-seed val_loss (nats per token). H0: the mean improvement is at most
0.005 nats. With several baseline seeds it is Welch's t-test (unequal variances,
Welch–Satterthwaite degrees of freedom); with one baseline number it is a one-sample t-test on
the per-seed improvements. p comes from Student's t distribution through the regularized
incomplete beta function, computed here (no scipy).

nats ↔ bpb: val_bpb = val_loss / ln 2 × tokens / bytes of the val split, so an improvement of
Δ nats per token is Δ / ln 2 × tokens / bytes bits per byte. A baseline given in bpb is turned
into nats with *our* runs' tokens/bytes, which is exact when both use the same tokenizer and val
split and meaningless otherwise.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from golf.challenge import SIGNIFICANCE_NATS, SIGNIFICANCE_P

BAR_NATS = SIGNIFICANCE_NATS
ALPHA = SIGNIFICANCE_P
MIN_SEEDS = 2  # a t-test needs a variance; the challenge usually asks for 3 seeds


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b), by its continued fraction (modified Lentz)."""
    if not (a > 0 and b > 0 and 0.0 <= x <= 1.0):
        raise ValueError(f"betainc needs a, b > 0 and 0 ≤ x ≤ 1 (got {a}, {b}, {x})")
    if x in (0.0, 1.0):
        return x
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    # The fraction converges fast for x < (a+1)/(a+b+2); use the symmetry I_x(a,b) = 1 - I_{1-x}(b,a) otherwise.
    if x < (a + 1) / (a + b + 2):
        return math.exp(log_front) * _beta_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(b, a, 1.0 - x) / b


def _beta_fraction(a: float, b: float, x: float, eps: float = 1e-15, tiny: float = 1e-300) -> float:
    def guard(v: float) -> float:
        return tiny if abs(v) < tiny else v

    c, d = 1.0, 1.0 / guard(1.0 - (a + b) * x / (a + 1))
    h = d
    for m in range(1, 10_000):
        even = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        d = 1.0 / guard(1.0 + even * d)
        c = guard(1.0 + even / c)
        h *= d * c
        odd = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        d = 1.0 / guard(1.0 + odd * d)
        c = guard(1.0 + odd / c)
        h *= d * c
        if abs(d * c - 1.0) < eps:
            return h
    raise ArithmeticError(f"incomplete beta did not converge for a={a}, b={b}, x={x}")


def t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with `df` degrees of freedom."""
    if math.isinf(t):
        return 0.0 if t > 0 else 1.0
    tail = 0.5 * betainc(df / 2, 0.5, df / (df + t * t))
    return tail if t >= 0 else 1.0 - tail


def nats_to_bpb(nats: float, bytes_per_token: float) -> float:
    return nats / math.log(2) / bytes_per_token


def bpb_to_nats(bpb: float, bytes_per_token: float) -> float:
    return bpb * math.log(2) * bytes_per_token


def improvement_test(ours_nats: list[float], baseline_nats: list[float], bytes_per_token: float,
                     bar_nats: float = BAR_NATS, alpha: float = ALPHA) -> dict[str, Any]:
    """The record test; `ours_nats`/`baseline_nats` are per-seed val_loss (nats/token)."""
    n, m = len(ours_nats), len(baseline_nats)
    if m < 1:
        raise ValueError("the baseline needs at least one val_loss")
    improvement = statistics.fmean(baseline_nats) - statistics.fmean(ours_nats)
    out: dict[str, Any] = {
        "bar_nats": bar_nats, "alpha": alpha, "seeds": n, "baseline_seeds": m,
        "improvement_nats": improvement, "improvement_bpb": nats_to_bpb(improvement, bytes_per_token),
        "bytes_per_token": bytes_per_token, "p_value": None, "t": None, "df": None, "passes": None}
    if n < MIN_SEEDS:
        out.update(test="none", note=f"too few seeds for a test: {n} run(s); a p-value needs at least "
                                     f"{MIN_SEEDS} (the challenge usually asks for 3)")
        return out
    var = statistics.variance(ours_nats) / n
    if m >= 2:
        var_b = statistics.variance(baseline_nats) / m
        se = math.sqrt(var + var_b)
        spread = var**2 / (n - 1) + var_b**2 / (m - 1)  # Welch–Satterthwaite
        df = (var + var_b) ** 2 / spread if spread > 0 else float(n + m - 2)
        out["test"] = "Welch t-test, one-sided (per-seed val_loss, ours vs baseline)"
    else:
        se, df = math.sqrt(var), float(n - 1)
        out["test"] = "one-sample t-test, one-sided (per-seed improvement over the baseline's val_loss)"
    excess = improvement - bar_nats
    if se > 0:
        t = excess / se
        p = t_sf(t, df)
    else:  # identical seeds: no spread, the sign of the excess decides (t is infinite: not reported)
        t = None
        p = 0.0 if excess > 0 else 1.0
    out.update(t=t, df=df, p_value=p, passes=p < alpha,
               note=f"H0: improvement ≤ {bar_nats} nats; {'rejected' if p < alpha else 'not rejected'} "
                    f"at p < {alpha} (p = {p:.3g}, {n} seeds)")
    if n < 3:
        out["note"] += "; the challenge usually asks for 3 seeds"
    return out
