"""The heads of MODEL=bits: from a backbone feature h to a distribution over the m bits of a block.

- `BitwiseARHead` (exact): P(bits | h) = Π_i P(b_i | b_<i, h), all m conditionals from one MADE-
  masked MLP pass (teacher forcing). A bit whose other branch leads to no token is forced
  (probability 1), so the mass is renormalised over real tokens and −log P is an exact code length.
- `DiffusionHead` (bound): a denoiser x̂(z, λ, h) of the ±1 bits under Gaussian noise
  z = α x + σ ε (variance preserving: α² = sigmoid(λ), σ² = sigmoid(−λ), λ = log SNR). It is an MLP
  with adaLN conditioning on h and λ, and a matched-filter residual output x̂ = tanh(α z / σ² + r):
  tanh(α z / σ²) is the exact posterior mean of an independent uniform bit, so at high SNR x̂ is
  right by construction and the net learns only the context's correction r. Without that, a head
  that samples well still has an ELBO of thousands of bits (methods-diffusion-bits.md §3.4).

`diffusion_elbo` is the VDM continuous-time bound (Kingma et al. 2021) on −log P(bits | h) with an
explicit prior term at λ_min, an explicit reconstruction term at λ_max and the diffusion term
½ ∫ e^λ ‖x − x̂‖² dλ between them, estimated with λ drawn from `LambdaProposal`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from golf.models.layers import CastedLinear

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (z [N, m], λ [N]) → x̂ [N, m]


class MaskedLinear(CastedLinear):
    """A linear layer with a fixed 0/1 connectivity mask (MADE). Masked weights start at 0 and get
    zero gradient; under Adam (the `bithead` role's group) they then never move, so they compress away."""

    def __init__(self, in_features: int, out_features: int, mask: torch.Tensor, *, zero_init: bool = False) -> None:
        super().__init__(in_features, out_features, zero_init=zero_init)
        self.register_buffer("mask", mask.float(), persistent=False)
        with torch.no_grad():
            self.weight.mul_(self.mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight if self.fake_quant is None else self.fake_quant(self.weight)
        return F.linear(x, (weight * self.mask).to(x.dtype))


class BitwiseARHead(nn.Module):
    """MADE over m bits conditioned on h: logit i sees h and bits < i only.

    Hidden unit j has degree j mod m and sees bits 1..degree (1-based); logit i reads the units of
    degree ≤ i-1, a direct masked map of the earlier bits, and h through an unmasked map.
    """

    def __init__(self, n_bits: int, model_dim: int, width: int, layers: int) -> None:
        super().__init__()
        degree = torch.arange(width) % n_bits
        bit_degree = torch.arange(1, n_bits + 1)
        self.n_bits = n_bits
        self.cond = CastedLinear(model_dim, width)
        self.inp = MaskedLinear(n_bits, width, degree[:, None] >= bit_degree[None, :])
        self.hidden = nn.ModuleList(MaskedLinear(width, width, degree[:, None] >= degree[None, :])
                                    for _ in range(layers - 1))
        self.out = MaskedLinear(width, n_bits, degree[None, :] < bit_degree[:, None], zero_init=True)
        self.skip = MaskedLinear(n_bits, n_bits, torch.ones(n_bits, n_bits).tril(-1), zero_init=True)
        self.cond_out = CastedLinear(model_dim, n_bits, zero_init=True)

    def forward(self, h: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
        """Logits [N, m] of P(b_i = +1 | b_<i, h) for features h [N, d] and ±1 bits [N, m]."""
        bits = bits.to(h.dtype)
        a = F.silu(self.cond(h) + self.inp(bits))
        for layer in self.hidden:
            a = a + F.silu(layer(a))
        return self.out(a) + self.skip(bits) + self.cond_out(h)

    @torch.no_grad()
    def sample(self, h: torch.Tensor, allowed: Callable[[int, torch.Tensor], torch.Tensor], *,
               temperature: float, generator: torch.Generator | None) -> torch.Tensor:
        """±1 bits [N, m], one at a time. `allowed(i, bits)` → [N, 2] bool: which values bit i may
        take given the bits so far (a branch with no token behind it may not). Temperature 0: greedy."""
        bits = torch.zeros(h.size(0), self.n_bits, device=h.device)
        for i in range(self.n_bits):
            logit = self(h, bits)[:, i].float()
            p_one = (logit > 0).float() if temperature == 0 else torch.sigmoid(logit / temperature)
            ok = allowed(i, bits)
            p_one = torch.where(ok[:, 0], p_one, torch.ones_like(p_one))
            p_one = torch.where(ok[:, 1], p_one, torch.zeros_like(p_one))
            u = torch.rand(p_one.shape, generator=generator, device=h.device)
            bits[:, i] = torch.where(u < p_one, 1.0, -1.0) if temperature != 0 else p_one * 2 - 1
        return bits


def bitwise_nats(logits: torch.Tensor, bits: torch.Tensor, free: torch.Tensor) -> torch.Tensor:
    """−log P(b_i | b_<i, h) per bit: softplus(−b·logit) where both branches hold tokens (`free` 1),
    0 where the other branch is empty (the bit is forced; the mass is renormalised over tokens)."""
    return F.softplus(-bits * logits.float()) * free


# ----------------------------------------------------------------------------- bit diffusion


def vp_alpha_sigma(lam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """α, σ of the variance-preserving path at log-SNR λ: α² = sigmoid(λ), σ² = sigmoid(−λ)."""
    return torch.sigmoid(lam).sqrt(), torch.sigmoid(-lam).sqrt()


def matched_filter_logit(z: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """α z / σ², broadcast over the bits: tanh of it is E[x | z] for an independent uniform ±1 bit."""
    alpha, sigma = vp_alpha_sigma(lam)
    return z * (alpha / sigma.square())[:, None]


@dataclasses.dataclass(frozen=True)
class LambdaProposal:
    """A logistic distribution over λ truncated to [lo, hi], sampled by inverse CDF (so a stratified
    u gives stratified λ). Its exponential tails keep the importance weight e^λ / p(λ) bounded at
    low λ (scale ≥ 1) while most draws land where bits are resolved (λ ≈ −2…4)."""

    lo: float
    hi: float
    loc: float = 1.0
    scale: float = 1.5

    def _cdf(self, lam: float) -> float:
        return 1.0 / (1.0 + math.exp(-(lam - self.loc) / self.scale))

    def sample(self, u: torch.Tensor) -> torch.Tensor:
        lo, hi = self._cdf(self.lo), self._cdf(self.hi)
        return (self.loc + self.scale * torch.logit(lo + u * (hi - lo))).clamp(self.lo, self.hi)

    def density(self, lam: torch.Tensor) -> torch.Tensor:
        s = torch.sigmoid((lam - self.loc) / self.scale)
        return s * (1 - s) / self.scale / (self._cdf(self.hi) - self._cdf(self.lo))


def diffusion_elbo(denoise: Denoiser, x: torch.Tensor, lam: torch.Tensor, eps: torch.Tensor,
                   eps_recon: torch.Tensor, proposal: LambdaProposal) -> torch.Tensor:
    """One Monte Carlo estimate [N] of the VDM bound on −log P(x) in nats, for ±1 bits x [N, m]:

        prior   KL(q(z_min | x) ‖ N(0, I)) = m · ½ softplus(λ_min)            (exact)
        recon   −log p(x | z_max), p(x_i | z_i) = sigmoid(2 x_i α z_i / σ²) at λ_max (one draw eps_recon)
        diff    ½ e^λ ‖x − x̂(z_λ, λ)‖² / p(λ), λ ~ proposal, z_λ = α x + σ eps     (unbiased)

    The bound holds for any denoiser; with the Bayes-optimal one it is tight up to the endpoint
    terms (≈ 1e-4 nats per bit at λ_min = −8, λ_max = 5)."""
    m = x.size(-1)
    alpha, sigma = vp_alpha_sigma(lam)
    z = alpha[:, None] * x + sigma[:, None] * eps
    x_hat = denoise(z, lam).float()
    diff = 0.5 * lam.exp() * (x - x_hat).square().sum(-1) / proposal.density(lam)
    prior = m * 0.5 * math.log1p(math.exp(proposal.lo))
    snr_max = math.exp(proposal.hi)
    recon = F.softplus(-2 * snr_max - 2 * math.sqrt(snr_max) * eps_recon).sum(-1)
    return prior + recon + diff


class _AdaLNBlock(nn.Module):
    """LayerNorm → adaLN scale/shift from the condition → SwiGLU (1.5× wide) → gated residual."""

    def __init__(self, width: int) -> None:
        super().__init__()
        hidden = 3 * width // 2
        self.ada = CastedLinear(width, 3 * width, zero_init=True)
        self.fc = CastedLinear(width, 2 * hidden)
        self.proj = CastedLinear(hidden, width)

    def forward(self, a: torch.Tensor, modulation: torch.Tensor) -> torch.Tensor:
        """`modulation` = self.ada(condition): computed apart, since it does not depend on a."""
        shift, scale, gate = modulation.chunk(3, dim=-1)
        u = F.layer_norm(a, (a.size(-1),)) * (1 + scale) + shift
        gate_in, value = self.fc(u).chunk(2, dim=-1)
        return a + gate * self.proj(F.silu(gate_in) * value)


class DiffusionHead(nn.Module):
    """x̂(z, λ, h) = tanh(α z/σ² + r(z, λ, h)) for the m bits of a block (see the module docstring)."""

    FREQUENCIES = 16

    def __init__(self, n_bits: int, model_dim: int, width: int, layers: int) -> None:
        super().__init__()
        self.n_bits = n_bits
        freqs = torch.exp(torch.linspace(math.log(0.05), math.log(20.0), self.FREQUENCIES))
        self.register_buffer("freqs", freqs, persistent=False)
        self.time = CastedLinear(2 * self.FREQUENCIES, width)
        self.cond = CastedLinear(model_dim, width)
        self.inp = CastedLinear(2 * n_bits, width)
        self.blocks = nn.ModuleList(_AdaLNBlock(width) for _ in range(layers))
        self.final_ada = CastedLinear(width, 2 * width, zero_init=True)
        self.out = CastedLinear(width, n_bits, zero_init=True)

    def forward(self, z: torch.Tensor, lam: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """x̂ [N, m] for noisy bits z [N, m] at log-SNR λ [N], given features h [N, d]."""
        return self.denoise(z, lam, self.modulations(lam, h))

    def modulations(self, lam: torch.Tensor, h: torch.Tensor) -> list[torch.Tensor]:
        """Every adaLN parameter for (λ, h): all that depends on the condition and not on z, so a
        sampler computes them for all its steps in one batch."""
        angles = lam.float()[:, None] * self.freqs
        time = torch.cat((angles.sin(), angles.cos()), dim=-1).to(h.dtype)
        cond = F.silu(self.time(time) + self.cond(h))
        return [block.ada(cond) for block in self.blocks] + [self.final_ada(cond)]

    def denoise(self, z: torch.Tensor, lam: torch.Tensor, modulations: list[torch.Tensor]) -> torch.Tensor:
        prior = matched_filter_logit(z.float(), lam.float())
        a = self.inp(torch.cat((z.float(), prior.tanh()), dim=-1).to(modulations[0].dtype))
        for block, modulation in zip(self.blocks, modulations):
            a = block(a, modulation)
        shift, scale = modulations[-1].chunk(2, dim=-1)
        r = self.out(F.layer_norm(a, (a.size(-1),)) * (1 + scale) + shift)
        return torch.tanh(prior + r.float())

    @torch.no_grad()
    def sample(self, h: torch.Tensor, *, steps: int, proposal: LambdaProposal, temperature: float,
               generator: torch.Generator | None) -> torch.Tensor:
        """Bits [N, m] by `steps` ancestral steps of the discretised reverse process on a uniform λ grid
        from λ_min to λ_max, then the decoder's bit at λ_max. Temperature scales the injected noise
        (0: the posterior-mean path, then the decoder's most likely bit). The ELBO bounds the
        continuous-time model; this K-step sampler is its discretisation."""
        n = h.size(0)

        def noise(shape: tuple[int, ...]) -> torch.Tensor:
            return torch.randn(shape, generator=generator, device=h.device)

        def alpha_sigma2(lam: float) -> tuple[float, float]:
            return math.sqrt(1 / (1 + math.exp(-lam))), 1 / (1 + math.exp(lam))

        grid = [proposal.lo + (proposal.hi - proposal.lo) * i / steps for i in range(steps + 1)]
        lams = torch.tensor(grid[:-1], device=h.device).repeat_interleave(n)
        per_step = [m.split(n) for m in self.modulations(lams, h.repeat(steps, 1))]
        z = noise((n, self.n_bits))  # q(z | x) at λ_min is N(0, I) to within α ≈ 0.02
        for i, (t, s) in enumerate(zip(grid[:-1], grid[1:])):
            (a_t, s2_t), (a_s, s2_s) = alpha_sigma2(t), alpha_sigma2(s)
            x_hat = self.denoise(z, lams[i * n:(i + 1) * n], [m[i] for m in per_step]).float()
            a_ts = a_t / a_s
            var_ts = s2_t - a_ts ** 2 * s2_s  # of z_t given z_s
            z = a_ts * s2_s / s2_t * z + a_s * var_ts / s2_t * x_hat
            if temperature:
                z = z + temperature * math.sqrt(var_ts * s2_s / s2_t) * noise(z.shape)
        logit = 2 * matched_filter_logit(z, torch.full((n,), grid[-1], device=h.device))
        if temperature == 0:
            return torch.where(logit > 0, 1.0, -1.0)
        u = torch.rand(logit.shape, generator=generator, device=h.device)
        return torch.where(u < torch.sigmoid(logit), 1.0, -1.0)
