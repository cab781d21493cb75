"""Rules: which scheme each tensor of a state dict gets, and whole-state-dict (de)quantization.

A rule string is parsed once into a `Rule` object that answers `scheme_for(name, tensor)`. Today
the strings are presets (`int8`, the official routing; `fp32`/`fp16`/`bf16`, everything float
stored in one dtype). The per-group grammar (`emb=int4g32,attn=int6,...,small=fp16`) will be one
more `Rule` subclass picked by `parse_rule`; nothing else has to change.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import NamedTuple

import torch
from torch import Tensor

from .errors import QuantError
from .schemes import Encoded, get_scheme

# Substrings of the baseline's control tensors (gains, mixes, skip weights): kept in fp32 because
# they are few and the model is sensitive to them (train_gpt.py CONTROL_TENSOR_NAME_PATTERNS).
CONTROL_PATTERNS = ("attn_scale", "attn_scales", "mlp_scale", "mlp_scales", "resid_mix", "resid_mixes",
                    "q_gain", "skip_weight", "skip_weights")
# Float tensors up to this many elements are stored as floats, not int8 (INT8_KEEP_FLOAT_MAX_NUMEL).
KEEP_FLOAT_MAX_NUMEL = 65_536


class Rule(ABC):
    """A parsed rule; `spec` is its canonical string, recorded in the artifact manifest."""

    spec: str

    @abstractmethod
    def scheme_for(self, name: str, t: Tensor) -> str:
        """The registered scheme name for tensor `name`."""

    def __str__(self) -> str:
        return self.spec


class OfficialInt8Rule(Rule):
    """The baseline routing: non-float raw, small floats fp32 (control) or fp16, the rest int8."""

    spec = "int8"

    def scheme_for(self, name: str, t: Tensor) -> str:
        if not t.is_floating_point():
            return "raw"
        if t.numel() <= KEEP_FLOAT_MAX_NUMEL:
            return "fp32" if any(p in name for p in CONTROL_PATTERNS) else "fp16"
        return "int8"


class UniformFloatRule(Rule):
    """Every float tensor in one float dtype, the rest raw: the unquantized reference artifact."""

    def __init__(self, spec: str):
        self.spec = spec

    def scheme_for(self, name: str, t: Tensor) -> str:
        return self.spec if t.is_floating_point() else "raw"


_PRESETS = {"int8": OfficialInt8Rule, "fp32": lambda: UniformFloatRule("fp32"),
            "fp16": lambda: UniformFloatRule("fp16"), "bf16": lambda: UniformFloatRule("bf16")}


def parse_rule(rule: str | Rule) -> Rule:
    if isinstance(rule, Rule):
        return rule
    factory = _PRESETS.get(rule.strip())
    if factory is None:
        raise QuantError(f"unknown quantization rule {rule!r} (known: {', '.join(sorted(_PRESETS))})")
    return factory()


class QTensor(NamedTuple):
    """One quantized tensor: the scheme that made it, its parts, and what to decode it back to."""

    scheme: str
    enc: Encoded
    shape: tuple[int, ...]
    dtype: torch.dtype


def plan(state_dict: Mapping[str, Tensor], rule: str | Rule = "int8") -> dict[str, str]:
    """Tensor name → scheme name, without quantizing anything."""
    parsed = parse_rule(rule)
    return {name: parsed.scheme_for(name, t) for name, t in state_dict.items()}


def quantize(state_dict: Mapping[str, Tensor], rule: str | Rule = "int8") -> dict[str, QTensor]:
    out: dict[str, QTensor] = {}
    for name, scheme in plan(state_dict, rule).items():
        # On the CPU, like the official, so the quantile (and thus every byte) is device-independent.
        t = state_dict[name].detach().to("cpu").contiguous()
        try:
            enc = get_scheme(scheme).encode(t)
        except QuantError as e:
            raise QuantError(f"{name}: {e}") from None
        out[name] = QTensor(scheme, enc, tuple(t.shape), t.dtype)
    return out


def dequantize(quantized: Mapping[str, QTensor]) -> dict[str, Tensor]:
    """The state dict back, every tensor in its original shape and dtype."""
    out: dict[str, Tensor] = {}
    for name, qt in quantized.items():
        try:
            out[name] = get_scheme(qt.scheme).decode(qt.enc, qt.shape, qt.dtype)
        except QuantError as e:
            raise QuantError(f"{name}: {e}") from None
    return out
