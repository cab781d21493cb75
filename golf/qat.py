"""Quantization-aware training: fake-quantize weights in the forward pass, straight through.

For the last part of a run (QAT_START_FRAC) every weight whose rule scheme is intN (a linear
layer) or block int4 (the tied embedding, lookup and head alike) computes with its values rounded
to the scheme's grid, while gradients flow to the fp32 weight as if no rounding happened
(straight-through estimator). The weights then settle where rounding costs little. The grid is
absmax-scaled: the real encoder's clip search (15 candidate clips per row) would be the most
expensive op of a CPU step, and absmax is where that search starts.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor, nn

import quant
from quant.intn import IntNScheme
from quant.tied4 import BlockInt4Scheme

FakeQuant = Callable[[Tensor], Tensor]


def fake_quant_rows(w: Tensor, qmax: int) -> Tensor:
    """`w` rounded to a per-row symmetric grid in the forward pass, identity in the backward pass."""
    scale = w.detach().abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / qmax
    rounded = torch.clamp(torch.round(w.detach() / scale), -qmax, qmax) * scale
    return w + (rounded - w).detach()


def fake_quant_blocks(w: Tensor, group: int, qmax: int = 7) -> Tensor:
    """The same per block of `group` columns (the tied int4 embedding's grid)."""
    return fake_quant_rows(w.reshape(-1, group), qmax).reshape(w.shape)


def fake_quantizer(scheme: quant.Scheme) -> FakeQuant | None:
    """The forward-pass rounding that imitates `scheme`, or None if QAT does not cover it."""
    if isinstance(scheme, IntNScheme):
        return partial(fake_quant_rows, qmax=scheme.qmax)
    if isinstance(scheme, BlockInt4Scheme):
        return partial(fake_quant_blocks, group=scheme.group)
    return None


def enable_qat(model: nn.Module, rule: str | quant.Rule) -> int:
    """Turn on fake quantization for every QAT-capable module (one with a `fake_quant` slot) whose
    weight the rule sends to an intN or block-int4 scheme; returns how many."""
    parsed = quant.parse_rule(rule)
    enabled = 0
    for name, module in model.named_modules():
        if not hasattr(module, "fake_quant"):
            continue
        scheme = quant.get_scheme(parsed.scheme_for(f"{name}.weight", module.weight))
        module.fake_quant = fake_quantizer(scheme)
        enabled += module.fake_quant is not None
    return enabled
