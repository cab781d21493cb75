"""Where the bytes go, before a run: parameters by component, the artifact estimate per rule, the
largest model that fits, and FLOPs per token with a predicted 8×H100 step time.

Nothing is trained or quantized. Models are built on the `meta` device (shapes only, no memory),
each tensor's component is its model role (`tensor_roles()`), its scheme comes from `quant.plan`
with those roles, so new families, rules and schemes need no change here, and
its bytes from a table of *measured* compressed bytes per parameter per scheme
(`golf/assets/compression_ratios.json`, made by the benchmarks). Every byte figure is therefore
an estimate; `golf inspect` gives the real split of a real artifact.

An intN scheme with a K·σ step (`int6s12`) is looked up as spelled; a K the table lacks is
estimated from the measured K0 of the same width nearest in log: a uniform quantizer's code
entropy is about h(w/σ) + log2(qmax/K) bits, so bytes/param move by log2(K0/K)/8.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

import quant
from quant.rules import split_sigma
from golf import models
from golf.challenge import CAP_BYTES, GPUS, TRAIN_SECONDS
from golf.errors import GolfError
from golf.models.layers import CausalSelfAttention
from golf.limits import meta_model
from golf.selfcontained import pack, read_sources

DEFAULT_RATIOS = Path(__file__).resolve().parent / "assets" / "compression_ratios.json"
# Container + manifest, measured roughly on runs/demo and runs/large (int8, int4g32/int5 rules;
# zstd-22, brotli-11): header + SHA-256 ≈ 62 B, manifest preamble ≈ 330-390 B compressed, each
# tensor's manifest entry ≈ 17-30 B compressed. Rounded up; small next to any real model.
OVERHEAD_FIXED_BYTES = 512
OVERHEAD_PER_TENSOR_BYTES = 24
H100_BF16_FLOPS = 989e12  # dense bf16 peak of one H100 SXM
DEFAULT_MFU = 0.40
MAX_LAYERS = 4096  # search caps: beyond these the answer is "more than you can train in 10 min"
MAX_DIM = 65_536
DIM_MULTIPLE = 64
# Budget components of the standard roles; a family's own role (e.g. `bits`) is a component of its own.
ROLE_COMPONENTS = {"emb": "embedding", "head": "lm_head", "attn": "attention", "mlp": "mlp",
                   "control": "other", "other": "other"}
COMPONENTS = ("embedding", "lm_head", "attention", "mlp", "other")


@dataclasses.dataclass(frozen=True)
class Ratios:
    path: Path
    compressor: str
    provenance: dict[str, Any]
    bytes_per_param: dict[str, float]

    def of(self, scheme: str, t: Tensor) -> float:
        if scheme in self.bytes_per_param:
            return self.bytes_per_param[scheme]
        base, k = split_sigma(scheme)
        measured = [(k0, v) for name, v in self.bytes_per_param.items()
                    if k is not None and (split := split_sigma(name))[0] == base and (k0 := split[1]) is not None]
        if measured:  # the nearest measured step of the same width, shifted by the entropy's log2(K0/K)
            k0, at_k0 = min(measured, key=lambda kv: abs(math.log(kv[0] / k)))
            return max(at_k0 + math.log2(k0 / k) / 8, 0.0)
        if scheme == "raw":  # non-float tensors are stored as is: their element size, uncompressed
            return float(t.element_size())
        raise GolfError(f"scheme {scheme!r} has no measured bytes/param in {self.path} "
                        f"(it has: {', '.join(sorted(self.bytes_per_param))}); add it or pass --ratios FILE")


def load_ratios(path: Path) -> Ratios:
    if not path.is_file():
        raise GolfError(f"compression ratios file {path} not found; the benchmarks write it, or pass "
                        "--ratios FILE with {\"compressor\": ..., \"bytes_per_param\": {scheme: float}}")
    try:
        data = json.loads(path.read_text())
        table = {str(k): float(v) for k, v in data["bytes_per_param"].items()}
        compressor, provenance = str(data["compressor"]), dict(data.get("provenance") or {})
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as e:
        raise GolfError(f"{path}: not a compression ratios file ({type(e).__name__}: {e})") from None
    bad = sorted(k for k, v in table.items() if not (math.isfinite(v) and v > 0))
    if bad:
        raise GolfError(f"{path}: bytes_per_param must be positive numbers (bad: {', '.join(bad)})")
    return Ratios(path, compressor, provenance, table)


# ----------------------------------------------------------------------------- shapes


@dataclasses.dataclass(frozen=True)
class Shapes:
    """A model's state dict on the meta device (shapes only) and the role of every tensor."""

    state_dict: dict[str, Tensor]
    roles: dict[str, str]


def meta_shapes(variant: str, config: Any) -> Shapes:
    model = meta_model(variant, config)
    return Shapes(model.state_dict(), model.checked_roles())


def block_roles_like(reference: Mapping[str, str], names: list[str]) -> dict[str, str]:
    """Roles for another depth of the same model: `blocks.N.x` has the role `blocks.0.x` has in
    `reference` (every block is built alike); other names keep theirs."""
    return {n: reference[re.sub(r"^blocks\.\d+\.", "blocks.0.", n)] if n.startswith("blocks.") else reference[n]
            for n in names}


def ar_shapes(c: Any) -> dict[str, tuple[int, ...]]:
    """The `ar` state dict's shapes in closed form. Building 1000 blocks, even on meta, takes
    seconds; the layer search needs dozens of candidates. Checked against a real meta build
    before use (`Sizer`), so a change to ar.py falls back to building rather than lying."""
    d, head_dim = c.model_dim, c.model_dim // c.num_heads
    kv, hidden = c.num_kv_heads * head_dim, c.mlp_mult * c.model_dim
    shapes: dict[str, tuple[int, ...]] = {"tok_emb.weight": (c.vocab_size, d),
                                          "skip_weights": (min(c.num_layers // 2, c.num_layers - c.num_layers // 2), d)}
    for i in range(c.num_layers):
        b = f"blocks.{i}."
        shapes.update({b + "attn_scale": (d,), b + "mlp_scale": (d,), b + "resid_mix": (2, d),
                       b + "attn.q_gain": (c.num_heads,), b + "attn.c_q.weight": (d, d),
                       b + "attn.c_k.weight": (kv, d), b + "attn.c_v.weight": (kv, d),
                       b + "attn.proj.weight": (d, d), b + "mlp.fc.weight": (hidden, d),
                       b + "mlp.proj.weight": (d, hidden)})
    if not c.tie_embeddings:
        shapes["lm_head.weight"] = (c.vocab_size, d)
    return shapes


class Sizer:
    """Shape-only state dicts and roles for `variant` at any config, closed-form when verified
    against the real build at the user's config, else built."""

    def __init__(self, variant: str, reference: Shapes, config: Any) -> None:
        self.variant = variant
        self.reference_roles = reference.roles
        sd = reference.state_dict
        self.closed_form = (variant == "ar" and all(t.dtype == torch.float32 for t in sd.values())
                            and ar_shapes(config) == {k: tuple(t.shape) for k, t in sd.items()}
                            and block_roles_like(reference.roles, list(sd)) == reference.roles)
        self._cache: dict[str, Shapes] = {}  # every rule's search probes mostly the same configs

    def shapes(self, config: Any) -> Shapes:
        key = repr(config)
        if key not in self._cache:
            if self.closed_form:
                sd = {k: torch.empty(s, device="meta") for k, s in ar_shapes(config).items()}
                self._cache[key] = Shapes(sd, block_roles_like(self.reference_roles, list(sd)))
            else:
                self._cache[key] = meta_shapes(self.variant, config)
        return self._cache[key]


def component_of(role: str) -> str:
    return ROLE_COMPONENTS.get(role, role)


def params_by_component(shapes: Shapes) -> dict[str, int]:
    out = dict.fromkeys(COMPONENTS, 0)
    for name, t in shapes.state_dict.items():
        key = component_of(shapes.roles[name])
        out[key] = out.get(key, 0) + t.numel()
    return out


# ----------------------------------------------------------------------------- bytes


def estimate_bytes(shapes: Shapes, rule: str, ratios: Ratios) -> dict[str, Any]:
    """Model bytes ≈ Σ numel × bytes_per_param[scheme] + container overhead, split by component and scheme."""
    sd = shapes.state_dict
    by_component = dict.fromkeys(COMPONENTS, 0.0)
    by_scheme: dict[str, float] = {}
    try:
        planned = quant.plan(sd, rule, roles=shapes.roles, spelled=True)
    except quant.QuantError as e:
        raise GolfError(f"rule {rule!r}: {e}") from None
    for name, scheme in planned.items():
        t = sd[name]
        nbytes = t.numel() * ratios.of(scheme, t)
        key = component_of(shapes.roles[name])
        by_component[key] = by_component.get(key, 0.0) + nbytes
        by_scheme[scheme] = by_scheme.get(scheme, 0.0) + nbytes
    overhead = OVERHEAD_FIXED_BYTES + OVERHEAD_PER_TENSOR_BYTES * len(sd)
    return {"model_bytes": math.ceil(sum(by_scheme.values())) + overhead, "overhead_bytes": overhead,
            "bytes_by_component": {k: round(v) for k, v in by_component.items()},
            "bytes_by_scheme": {k: round(v) for k, v in sorted(by_scheme.items())}}


def _largest(fits: Callable[[int], bool], cap: int) -> int:
    """Largest k in [1, cap] with fits(k), 0 if none. Assumes bytes grow with k, which holds
    once matrices pass the int8 preset's small-tensor threshold, i.e. near any real cap."""
    if not fits(1):
        return 0
    lo, hi = 1, 2
    while hi <= cap and fits(hi):  # gallop, then bisect: O(log k) candidates
        lo, hi = hi, hi * 2
    hi = min(hi, cap + 1)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def width_step(config: Any) -> int:
    """Width search keeps the head dim and the query:KV head ratio of `config` fixed, so NUM_HEADS
    = MODEL_DIM / head_dim and NUM_KV_HEADS = NUM_HEADS / ratio stay integral: MODEL_DIM steps by
    lcm(64, head_dim × ratio)."""
    return math.lcm(DIM_MULTIPLE, config.model_dim // config.num_kv_heads)


def at_width(config: Any, dim: int) -> Any:
    head_dim, ratio = config.model_dim // config.num_heads, config.num_heads // config.num_kv_heads
    return dataclasses.replace(config, model_dim=dim, num_heads=dim // head_dim, num_kv_heads=dim // head_dim // ratio)


def largest_models(sizer: Sizer, config: Any, rule: str, ratios: Ratios, code_bytes: int) -> dict[str, Any]:
    """The largest NUM_LAYERS (at this width) and MODEL_DIM (at this depth) whose estimate fits,
    each with the next step up (which does not fit) so the margin is visible."""
    def total(cfg: Any) -> int:
        return code_bytes + estimate_bytes(sizer.shapes(cfg), rule, ratios)["model_bytes"]

    def search(make: Callable[[int], Any], cap: int, field: str) -> dict[str, Any] | None:
        k = _largest(lambda k: total(make(k)) <= CAP_BYTES, cap)
        if not k:
            return None
        found, nxt = make(k), make(k + 1)
        return {"value": getattr(found, field), "total_bytes": total(found), "at_cap": k >= cap,
                "params": sum(t.numel() for t in sizer.shapes(found).state_dict.values()),
                "num_heads": getattr(found, "num_heads", None), "num_kv_heads": getattr(found, "num_kv_heads", None),
                "next": {"value": getattr(nxt, field), "total_bytes": total(nxt)}}

    out: dict[str, Any] = {"num_layers": None, "model_dim": None}
    if hasattr(config, "num_layers"):
        out["num_layers"] = search(lambda n: dataclasses.replace(config, num_layers=n), MAX_LAYERS, "num_layers")
    if all(hasattr(config, f) for f in ("model_dim", "num_heads", "num_kv_heads")):
        step = width_step(config)
        out["model_dim"] = search(lambda k: at_width(config, k * step), MAX_DIM // step, "model_dim")
        if out["model_dim"]:
            out["model_dim"]["step"] = step
    return out


# ----------------------------------------------------------------------------- code and compute


def default_script() -> Path:
    script = Path(models.__file__).resolve().parents[2] / "train_gpt.py"
    if not script.is_file():
        raise GolfError(f"{script} not found (not a source checkout); pass --code-bytes N")
    return script


def packed_code_bytes(script: Path) -> tuple[int, int]:
    """(bytes of the self-contained train_gpt.py `golf pack` would write, number of source files):
    exactly the code a record counts, and what the trainer logs as `Code size:`."""
    sources = read_sources(script)
    return len(pack(sources)), len(sources.files())


def block_runs(model: nn.Module, config: Any) -> tuple[dict[int, int], int]:
    """How many times each block runs per token (depth recurrence runs some more than once) and the
    number of block runs in all (the L of the attention term)."""
    order = model.block_order() if hasattr(model, "block_order") else list(range(config.num_layers))
    runs = {i: order.count(i) for i in set(order)}
    return runs, len(order)


def attention_factor(model: nn.Module) -> int:
    """FLOPs per token per layer per T·D of attention: QKᵀ and AV are 2·T·D each forward, ×3 with the
    backward = 12, halved to 6 when every attention layer is causal (the mask skips half the pairs).
    Read from the attention modules themselves, so a bidirectional family (MDLM) counts in full."""
    layers = [m for m in model.modules() if isinstance(m, CausalSelfAttention)]
    return 6 if all(m.causal for m in layers) else 12


def compute(model: nn.Module, config: Any, seq_len: int, batch_tokens: int, mfu: float) -> dict[str, Any]:
    """Training FLOPs/token = 6·N_matmul (fwd 2 + bwd 4 per weight) + A·L·T·D (QKᵀ and AV, fwd+bwd:
    A = 12, halved to 6 for a causal mask); step time at `mfu` of 8 H100s' dense bf16 peak. N_matmul
    is every Linear weight, counted once per run of its block (depth recurrence), plus a tied head's
    V·D; L counts block runs. The embedding lookup is a gather, no FLOPs."""
    runs, layer_runs = block_runs(model, config)
    n = 0
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
            index = name.split(".")[1] if name.startswith("blocks.") else None
            n += m.weight.numel() * (runs.get(int(index), 1) if index is not None else 1)
    if getattr(config, "tie_embeddings", False):
        n += sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Embedding))
    factor = attention_factor(model)
    attention = factor * layer_runs * seq_len * config.model_dim
    per_token = 6 * n + attention
    step = per_token * batch_tokens / (GPUS * H100_BF16_FLOPS * mfu)
    steps = int(TRAIN_SECONDS // step)
    return {"formula": f"6*N_matmul + {factor}*L*T*D", "matmul_params": n, "attention_factor": factor,
            "layer_runs": layer_runs,
            "attention_flops_per_token": attention,
            "flops_per_token": per_token, "seq_len": seq_len, "batch_tokens": batch_tokens, "mfu": mfu,
            "gpus": GPUS, "peak_flops_per_gpu": H100_BF16_FLOPS, "step_seconds": step,
            "train_seconds": TRAIN_SECONDS, "steps": steps, "tokens": steps * batch_tokens}


# ----------------------------------------------------------------------------- the report


def budget(variant: str, config: Any, rules: list[str], ratios: Ratios, *, code_bytes: int, code_source: str,
           seq_len: int, batch_tokens: int, mfu: float = DEFAULT_MFU, search: bool = True,
           preset: str | None = None) -> dict[str, Any]:
    """The whole plan; `rules[0]` is the chosen rule whose fit decides `fits`."""
    model = meta_model(variant, config)
    shapes = Shapes(model.state_dict(), model.checked_roles())
    sd = shapes.state_dict
    sizer = Sizer(variant, shapes, config)
    params = params_by_component(shapes)
    total = sum(params.values())
    vocab = params["embedding"] + params["lm_head"]  # V·D, twice when the head is untied
    rows = []
    for i, rule in enumerate(rules):
        est = estimate_bytes(shapes, rule, ratios)
        total_bytes = code_bytes + est["model_bytes"]
        emb = est["bytes_by_component"]["embedding"] + est["bytes_by_component"]["lm_head"]
        rows.append({"rule": rule, "spec": quant.parse_rule(rule).spec, "chosen": i == 0, **est,
                     "total_bytes": total_bytes, "headroom": CAP_BYTES - total_bytes,
                     "fits": total_bytes <= CAP_BYTES, "vocab_bytes_share": emb / est["model_bytes"],
                     "largest": largest_models(sizer, config, rule, ratios, code_bytes) if search else None})
    return {"variant": variant, "preset": preset, "config": dataclasses.asdict(config), "limit": CAP_BYTES,
            "params": {"total": total, "components": params, "tensors": len(sd)},
            "vocab": {"vocab_size": model.vocab_size, "model_dim": getattr(config, "model_dim", None),
                      "params": vocab, "share": vocab / total if total else 0.0,
                      "tied": bool(getattr(config, "tie_embeddings", False))},
            "code_bytes": code_bytes, "code_source": code_source,
            "overhead": {"fixed": OVERHEAD_FIXED_BYTES, "per_tensor": OVERHEAD_PER_TENSOR_BYTES, "label": "estimate"},
            "ratios": {"path": str(ratios.path), "compressor": ratios.compressor, "provenance": ratios.provenance},
            "rules": rows, "compute": compute(model, config, seq_len, batch_tokens, mfu),
            "width_search": "head dim and query:KV head ratio fixed; MODEL_DIM steps by lcm(64, head_dim*ratio)",
            "closed_form_shapes": sizer.closed_form, "fits": rows[0]["fits"]}
