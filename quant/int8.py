"""The official baseline's int8 scheme, reproduced bit for bit (challenge.md §4).

2-D tensors get one scale per row: clip each row at the 99.99984th percentile of |w|, scale =
clip/127 (at least 1/127), q = round(w/scale) in [-127, 127]. q is computed with the fp32 scale
but the scale is *stored* as fp16, and decoding uses the fp16 scale; that mismatch is part of the
official numbers, so it is kept. Other shapes get one fp32 scale for the whole tensor.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .errors import QuantError
from .schemes import DEFAULTS, Encoded, EncodeOptions, Scheme, dequant_slack, expect_part, register_scheme, require_float

INT8_CLIP_PERCENTILE = 99.99984
INT8_CLIP_Q = INT8_CLIP_PERCENTILE / 100.0

# torch.quantile refuses reductions longer than 2**24 (older releases: inputs larger than that),
# so rows are fed to it in chunks of at most this many elements, and longer rows take a sort path.
_QUANTILE_MAX_ELEMENTS = 1 << 24

# Relative error of one fp32 division, in units of the step: q = round(fl(w/scale)) can land one
# step off only when w/scale is within this of a rounding tie, and |w/scale| ≤ 127.
_DIV_SLACK = 127 * 2.0**-24


def row_quantile(x: Tensor, q: float) -> Tensor:
    """`torch.quantile(x, q, dim=1)` for a 2-D float tensor of any size, bitwise equal."""
    rows, cols = x.shape
    if x.numel() == 0:
        return torch.zeros(rows, dtype=x.dtype)
    if cols > _QUANTILE_MAX_ELEMENTS:
        return _long_row_quantile(x, q)
    chunk = max(1, _QUANTILE_MAX_ELEMENTS // cols)
    return torch.cat([torch.quantile(part, q, dim=1) for part in x.split(chunk)])


def _long_row_quantile(x: Tensor, q: float) -> Tensor:
    """ATen's linear-interpolation quantile written out: rank = q·(n-1) in the input dtype,
    then lerp between the order statistics either side of it."""
    rank = torch.tensor(q, dtype=x.dtype) * (x.shape[1] - 1)
    below, above = rank.long(), rank.ceil().long()
    lo = x.kthvalue(int(below) + 1, dim=1).values
    hi = x.kthvalue(int(above) + 1, dim=1).values
    return torch.lerp(lo, hi, rank - below)


def _row_scales(t32: Tensor) -> tuple[Tensor, Tensor]:
    """Per-row clip and fp32 scale of a 2-D fp32 tensor, as the official computes them."""
    clip = row_quantile(t32.abs(), INT8_CLIP_Q)
    return clip, (clip / 127.0).clamp_min(1.0 / 127.0)


def _tensor_scale(t32: Tensor) -> tuple[float, Tensor]:
    """Whole-tensor clip (a Python float, as in the official) and fp32 scale."""
    clip = float(row_quantile(t32.abs().reshape(1, -1), INT8_CLIP_Q)[0]) if t32.numel() else 0.0
    return clip, torch.tensor(clip / 127.0 if clip > 0 else 1.0, dtype=torch.float32)


class Int8Scheme(Scheme):
    name = "int8"

    def encode(self, w: Tensor, opts: EncodeOptions = DEFAULTS) -> Encoded:
        require_float(self.name, w)
        t32 = w.detach().to("cpu").float()
        if t32.ndim == 2:
            clip, scale = _row_scales(t32)
            clipped = torch.maximum(torch.minimum(t32, clip[:, None]), -clip[:, None])
            q = torch.clamp(torch.round(clipped / scale[:, None]), -127, 127).to(torch.int8).contiguous()
            return Encoded({"q": q, "scale": scale.to(torch.float16).contiguous()}, {"granularity": "row"})
        clip, scale = _tensor_scale(t32)
        q = torch.clamp(torch.round(torch.clamp(t32, -clip, clip) / scale), -127, 127).to(torch.int8).contiguous()
        return Encoded({"q": q, "scale": scale}, {"granularity": "tensor"})

    def decode(self, enc: Encoded, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
        q = expect_part(enc, "q", torch.int8, shape)
        granularity = enc.meta.get("granularity")
        if granularity == "row" and len(shape) == 2:
            scale = expect_part(enc, "scale", torch.float16, (shape[0],))
            return (q.float() * scale.to(torch.float32).view(shape[0], 1)).to(dtype).contiguous()
        if granularity == "tensor":
            scale = expect_part(enc, "scale", torch.float32, ())
            return (q.float() * float(scale.item())).to(dtype).contiguous()
        raise QuantError(f"int8: granularity {granularity!r} does not fit shape {list(shape)}")

    def error_bound(self, w: Tensor, opts: EncodeOptions = DEFAULTS) -> float:
        if w.numel() == 0:
            return 0.0
        t32 = w.detach().to("cpu").float()
        if t32.ndim == 2:
            clip, scale = _row_scales(t32)
            stored = scale.to(torch.float16).float()
        else:
            clip_value, scale = _tensor_scale(t32)
            clip, scale, stored, t32 = torch.tensor([clip_value]), scale.reshape(1), scale.reshape(1), t32.reshape(1, -1)
        # Per row: the clipped-off excess of outliers, half a step of rounding (plus a division
        # rounding), and up to 127 times the fp16 rounding of the step itself.
        excess = (t32.abs() - clip[:, None]).clamp_min(0).amax(dim=1)
        per_row = excess + scale * (0.5 + _DIV_SLACK) + 127 * (scale - stored).abs()
        top = 127 * float(stored.max())
        # Then the fp32 product q·scale, the cast to the original dtype, and (fp64 only) the cast in.
        return float(per_row.max()) + dequant_slack(w, top)


INT8 = register_scheme(Int8Scheme())
