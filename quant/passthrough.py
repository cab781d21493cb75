"""Passthrough schemes: store the tensor as a float dtype (`fp32`, `fp16`, `bf16`) or as-is (`raw`).

The official baseline keeps small tensors this way: control tensors in fp32, other small floats in
fp16, non-float tensors untouched. Decoding casts back to the original dtype so a state dict
reloads with `strict=True` and the same dtypes it was saved with.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .schemes import (DEFAULTS, Encoded, EncodeOptions, Scheme, expect_part, max_abs, register_scheme,
                      represents, require_float, rounding_slack)


class CastScheme(Scheme):
    """Store a float tensor as `store` dtype; decode casts back."""

    def __init__(self, name: str, store: torch.dtype):
        self.name = name
        self.store = store

    def encode(self, w: Tensor, opts: EncodeOptions = DEFAULTS) -> Encoded:
        require_float(self.name, w)
        return Encoded({"data": w.detach().to(device="cpu", dtype=self.store, copy=True).contiguous()})

    def decode(self, enc: Encoded, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
        return expect_part(enc, "data", self.store, shape).to(dtype)

    def error_bound(self, w: Tensor, opts: EncodeOptions = DEFAULTS) -> float:
        m = max_abs(w)
        bound = 0.0 if represents(self.store, w.dtype) else rounding_slack(self.store, m)
        # The way back can round again when the original dtype is the narrower one (fp16 stored as bf16).
        if not represents(w.dtype, self.store):
            bound += rounding_slack(w.dtype, m + bound)
        return bound


class RawScheme(Scheme):
    """Store the tensor unchanged, in its own dtype: exact, for integer and bool buffers."""

    name = "raw"

    def encode(self, w: Tensor, opts: EncodeOptions = DEFAULTS) -> Encoded:
        return Encoded({"data": w.detach().to(device="cpu", copy=True).contiguous()})

    def decode(self, enc: Encoded, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
        return expect_part(enc, "data", dtype, shape)

    def error_bound(self, w: Tensor, opts: EncodeOptions = DEFAULTS) -> float:
        return 0.0


FP32 = register_scheme(CastScheme("fp32", torch.float32))
FP16 = register_scheme(CastScheme("fp16", torch.float16))
BF16 = register_scheme(CastScheme("bf16", torch.bfloat16))
RAW = register_scheme(RawScheme())
