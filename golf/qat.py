"""Quantization-aware training: fake-quantize weights in the forward pass, straight through.

For the last part of a run (QAT_START_FRAC) every weight whose scheme (by the rule and the tensor's
role) offers a fake quantizer computes with its values rounded to that scheme's grid, while
gradients flow to the fp32 weight as if no rounding happened (straight-through estimator). The
weights then settle where rounding costs little. Each scheme supplies its own rounding
(`Scheme.fake_quantizer`), so a new scheme needs no change here.
"""

from __future__ import annotations

from torch import nn

import quant


def enable_qat(model: nn.Module, rule: str | quant.Rule, roles: dict[str, str]) -> int:
    """Turn on fake quantization for every QAT-capable module (one with a `fake_quant` slot) whose
    weight's scheme has a fake quantizer; returns how many. `roles`: the model's tensor roles."""
    parsed = quant.parse_rule(rule)
    enabled = 0
    for name, module in model.named_modules():
        if not hasattr(module, "fake_quant"):
            continue
        weight = f"{name}.weight"
        scheme = quant.get_scheme(parsed.scheme_for(weight, module.weight, roles[weight]))
        module.fake_quant = scheme.fake_quantizer(parsed.options_for(weight, module.weight, roles[weight], None))
        enabled += module.fake_quant is not None
    return enabled
