"""Quantization-aware training: fake-quantize intN weights in the forward pass, straight through.

For the last part of a run (QAT_START_FRAC) every linear layer whose rule scheme is intN computes
with its weight rounded to the scheme's grid (per-row absmax scale, codes in [-qmax, qmax]), while
gradients flow to the fp32 weight as if no rounding happened (straight-through estimator). The
weights then settle where rounding costs little. The clip search of the real encoder is not run
per step (15 candidate clips per matrix per step would be the most expensive op on CPU); absmax
is the grid the search starts from.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

import quant
from quant.intn import IntNScheme


def fake_quant_rows(w: Tensor, qmax: int) -> Tensor:
    """`w` rounded to a per-row symmetric grid in the forward pass, identity in the backward pass."""
    scale = w.detach().abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / qmax
    rounded = torch.clamp(torch.round(w.detach() / scale), -qmax, qmax) * scale
    return w + (rounded - w).detach()


def enable_qat(model: nn.Module, rule: str | quant.Rule) -> int:
    """Turn on fake quantization for each linear layer the rule sends to an intN scheme; returns how many."""
    parsed = quant.parse_rule(rule)
    enabled = 0
    for name, module in model.named_modules():
        if not hasattr(module, "qat_qmax"):
            continue
        scheme = quant.get_scheme(parsed.scheme_for(f"{name}.weight", module.weight))
        if isinstance(scheme, IntNScheme):
            module.qat_qmax = scheme.qmax
            enabled += 1
    return enabled
