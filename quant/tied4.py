"""Block 4-bit schemes (`int4g32`, `int4g64`) for the tied embedding, in the ONNX contrib layout.

A tied model keeps one [V, D] table that serves both the token lookup and the LM head; it is
stored once. Each row is cut into blocks of g columns (g = 32 or 64); a block gets one fp16 scale
s = clip/7 (clip-searched like intN) and codes round(w/s) in [-7, 7], stored as unsigned nibbles
code+8 in 1..15 with the even column in the low nibble. That is exactly what onnxruntime's
`MatMulNBits` (head) and `GatherBlockQuantized` (lookup) read with their implicit zero point 8:
the packed part is [V, D/g, g/2] uint8 and the scales [V, D/g], so ONNX export reuses these bytes
and never needs a second copy (see shared reference onnx-int4-tied.md).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor

from .errors import QuantError
from .intn import reconstruction_bound, search_clip
from .schemes import (DEFAULTS, Encoded, EncodeOptions, Scheme, dequant_slack, expect_part, fake_quant_rows,
                      register_scheme, require_float)

_QMAX = 7
_ZERO_POINT = 8


def _blocks(w: Tensor, group: int, scheme: str) -> Tensor:
    if w.ndim != 2 or w.shape[1] % group:
        raise QuantError(f"{scheme} needs a 2-D tensor whose second dim is a multiple of {group}, "
                         f"got {list(w.shape)}")
    return w.detach().to("cpu").float().reshape(-1, group)


class BlockInt4Scheme(Scheme):
    def __init__(self, group: int):
        self.group = group
        self.name = f"int4g{group}"

    def encode(self, w: Tensor, opts: EncodeOptions = DEFAULTS) -> Encoded:
        require_float(self.name, w)
        rows, cols = w.shape if w.ndim == 2 else (0, 0)
        codes, scale = search_clip(_blocks(w, self.group, self.name), _QMAX)
        nibbles = (codes + _ZERO_POINT).to(torch.uint8).reshape(-1, 2)
        packed = nibbles[:, 0] | (nibbles[:, 1] << 4)
        blocks = cols // self.group
        return Encoded({"packed": packed.reshape(rows, blocks, self.group // 2).contiguous(),
                        "scale": scale.to(torch.float16).reshape(rows, blocks)},
                       {"group": self.group, "onnx": "MatMulNBits/GatherBlockQuantized uint8 zp=8"})

    def decode(self, enc: Encoded, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
        if len(shape) != 2 or shape[1] % self.group or enc.meta.get("group") != self.group:
            raise QuantError(f"{self.name}: meta {enc.meta!r} does not fit shape {list(shape)}")
        rows, blocks = shape[0], shape[1] // self.group
        packed = expect_part(enc, "packed", torch.uint8, (rows, blocks, self.group // 2)).to(torch.int32)
        scale = expect_part(enc, "scale", torch.float16, (rows, blocks)).float()
        codes = torch.stack([packed & 0xF, packed >> 4], dim=-1).reshape(rows, blocks, self.group) - _ZERO_POINT
        return (codes.float() * scale[:, :, None]).reshape(shape).to(dtype)

    def fake_quantizer(self, opts: EncodeOptions = DEFAULTS) -> Callable[[Tensor], Tensor]:
        return partial(fake_quant_blocks, group=self.group)

    def error_bound(self, w: Tensor, opts: EncodeOptions = DEFAULTS) -> float:
        if w.numel() == 0:
            return 0.0
        blocks = _blocks(w, self.group, self.name)
        _, scale = search_clip(blocks, _QMAX)
        top = _QMAX * float(scale.max())
        slack = dequant_slack(w, top)
        return float(reconstruction_bound(blocks, scale, _QMAX, gptq=False).max()) + slack


def fake_quant_blocks(w: Tensor, group: int) -> Tensor:
    """QAT's rounding per block of `group` columns, straight through (the grid `encode` stores)."""
    return fake_quant_rows(w.reshape(-1, group), _QMAX).reshape(w.shape)


TIED4 = {g: register_scheme(BlockInt4Scheme(g)) for g in (32, 64)}
