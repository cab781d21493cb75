"""intN per-row schemes (`int4` … `int7`): symmetric codes, a clip search, optional GPTQ.

Each row r gets one fp16 scale s_r and codes q in [-(2^(N-1)-1), 2^(N-1)-1]; w ≈ q·s_r. The
scale is not simply max|w|/qmax: a clip search ("GPTQ-lite") tries a ladder of clip ratios per
row and keeps the one with the smallest squared reconstruction error, because clipping a few
outliers buys a finer step for every other weight. With a calibration Hessian in the options the
codes come from GPTQ instead of rounding (same scales, same decoder). Codes are bit-packed in the
layout the options name (see `packing`), after a zigzag map that puts small magnitudes first.

With `clip_sigmas` K in the options (rule spelling `int6s12.85`) the step is K·σ_row/qmax instead,
σ_row the row's root mean square (its spread about zero, where the symmetric grid is centred; a
plain standard deviation would give a constant row a zero step and lose it whole):
the top records' choice. At K ≈ 12 almost no weight is clipped and the codes use a fraction of the
range, so they cost fewer bits once compressed (a uniform quantizer's entropy is about
h(w/σ) + log2(qmax/K) bits) for a coarser step; GPTQ then spends that step where the loss cares
least. The decoder does not change: the artifact stores the same codes and scales.

Tensors of any rank are quantized as [shape[0], rest] (a vector is one row).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor

from .errors import QuantError
from .gptq import gptq_codes
from .packing import check_layout, pack_codes, unpack_codes
from .schemes import (DEFAULTS, Encoded, EncodeOptions, Scheme, dequant_slack, expect_part, fake_quant_rows,
                      fake_quant_sigma_rows, register_scheme, require_float)

# Clip ratios tried per row (fraction of the row's max |w|); 1.0 first, so ties keep no clipping.
CLIP_RATIOS = (1.0, 0.98, 0.96, 0.94, 0.92, 0.90, 0.88, 0.86, 0.84, 0.82, 0.80, 0.77, 0.74, 0.70, 0.65)
_FP16_MAX = float(torch.finfo(torch.float16).max)
_FP16_TINY = float(torch.finfo(torch.float16).smallest_normal)
# One fp32 division's relative error, in steps: rounding w/s can land one step off near a tie.
_DIV_SLACK = 2.0**-23


def as_rows(w: Tensor) -> Tensor:
    """`w` as a 2-D fp32 [rows, cols] view: [shape[0], rest], or one row for a vector/scalar."""
    t32 = w.detach().to("cpu").float()
    return t32.reshape(t32.shape[0], -1) if t32.ndim >= 2 else t32.reshape(1, -1)


def row_meta(enc: Encoded, shape: tuple[int, ...], scheme: str) -> tuple[int, int]:
    """The (rows, cols) an encoder recorded, checked against the logical shape."""
    rows, cols = enc.meta.get("rows"), enc.meta.get("cols")
    if not (isinstance(rows, int) and isinstance(cols, int) and rows * cols == torch.Size(shape).numel()):
        raise QuantError(f"{scheme}: rows/cols {rows!r}x{cols!r} do not fit shape {list(shape)}")
    return rows, cols


def fp16_scale(x: Tensor) -> Tensor:
    """Scales rounded to fp16 (the stored form) and back, so encoder and decoder use the same step.

    Steps below fp16's normal range are raised to it, because a subnormal step would lose its
    precision; that includes all-zero rows, whose codes are 0 whatever the step.
    """
    if x.numel() and float(x.max()) > _FP16_MAX:
        raise QuantError(f"a scale of {float(x.max()):.3g} overflows fp16 (weights this large need fp32)")
    return x.clamp_min(_FP16_TINY).to(torch.float16).float()


def search_clip(rows: Tensor, qmax: int, ratios: tuple[float, ...] = CLIP_RATIOS) -> tuple[Tensor, Tensor]:
    """Per row, the clip ratio with the least squared error: (codes int32 [R, C], scale fp32 [R])."""
    absmax = rows.abs().amax(dim=1)
    best_err = torch.full_like(absmax, float("inf"))
    best_scale = torch.ones_like(absmax)
    for ratio in ratios:
        scale = fp16_scale(absmax * ratio / qmax)
        q = torch.clamp(torch.round(rows / scale[:, None]), -qmax, qmax)
        err = (q * scale[:, None] - rows).square().sum(dim=1)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_scale = torch.where(better, scale, best_scale)
    codes = torch.clamp(torch.round(rows / best_scale[:, None]), -qmax, qmax).to(torch.int32)
    return codes, best_scale


def sigma_scale(rows: Tensor, qmax: int, clip_sigmas: float) -> tuple[Tensor, Tensor]:
    """Per row, the step K·rms/qmax: (codes int32 [R, C], scale fp32 [R])."""
    scale = fp16_scale(clip_sigmas * rows.square().mean(dim=1).sqrt() / qmax)
    codes = torch.clamp(torch.round(rows / scale[:, None]), -qmax, qmax).to(torch.int32)
    return codes, scale


def row_codes(rows: Tensor, qmax: int, opts: EncodeOptions) -> tuple[Tensor, Tensor]:
    """The rounded codes and scales the options ask for: a K·σ step, or the clip search."""
    if opts.clip_sigmas is not None:
        return sigma_scale(rows, qmax, opts.clip_sigmas)
    return search_clip(rows, qmax)


def reconstruction_bound(rows: Tensor, scale: Tensor, qmax: int, *, gptq: bool) -> Tensor:
    """Per-row max |w - ŵ| this scheme promises (before the final float casts).

    Rounding: half a step (plus a division's rounding), or for clipped weights the clipped-off
    excess. GPTQ moves codes away from nearest, so it only promises |ŵ| ≤ qmax·s.
    """
    absmax = rows.abs().amax(dim=1) if rows.numel() else torch.zeros(rows.shape[0])
    if gptq:
        bound = absmax + qmax * scale
    else:
        bound = torch.maximum(scale * (0.5 + qmax * _DIV_SLACK), (absmax - qmax * scale).clamp_min(0))
    return torch.where(absmax > 0, bound, torch.zeros_like(bound))  # an all-zero row decodes exactly


def zigzag(q: Tensor) -> Tensor:
    """Signed codes → unsigned, small magnitudes first (0, -1, 1, -2, … → 0, 1, 2, 3, …).

    Measured on trained matrices (BENCHMARKS.md): with offset-binary codes (q + 2^(N-1)) the top
    bit plane is the sign and every plane is near-random; with zigzag the high planes are mostly
    zero, so the `planes` layout compresses to within ~1 % of the codes' entropy.
    """
    return torch.where(q >= 0, 2 * q, -2 * q - 1).to(torch.uint8)


def unzigzag(z: Tensor) -> Tensor:
    z = z.to(torch.int32)
    return (z >> 1) ^ -(z & 1)


class IntNScheme(Scheme):
    """Per-row symmetric N-bit integers, clip-searched, bit-packed."""

    def __init__(self, bits: int):
        if not 2 <= bits <= 8:
            raise QuantError(f"intN needs 2..8 bits, got {bits}")
        self.bits = bits
        self.qmax = (1 << (bits - 1)) - 1
        self.name = f"int{bits}"

    def encode(self, w: Tensor, opts: EncodeOptions = DEFAULTS) -> Encoded:
        require_float(self.name, w)
        rows = as_rows(w)
        codes, scale = row_codes(rows, self.qmax, opts)
        if opts.hessian is not None:
            codes = gptq_codes(rows, opts.hessian.detach().to("cpu").float(), scale, self.qmax)
        layout = check_layout(opts.layout)
        stored = pack_codes(zigzag(codes).reshape(-1), self.bits, layout)
        return Encoded({"codes": stored, "scale": scale.to(torch.float16)},
                       {"bits": self.bits, "layout": layout, "rows": rows.shape[0], "cols": rows.shape[1],
                        "gptq": opts.hessian is not None})

    def decode(self, enc: Encoded, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
        rows, cols = row_meta(enc, shape, self.name)
        if enc.meta.get("bits") != self.bits:
            raise QuantError(f"{self.name}: meta says {enc.meta.get('bits')!r} bits")
        layout = check_layout(str(enc.meta.get("layout")))
        stored = enc.parts.get("codes")
        if stored is None:
            raise QuantError(f"{self.name}: missing part 'codes'")
        unsigned = unpack_codes(stored, self.bits, layout, rows * cols)
        if unsigned.numel() and int(unsigned.max()) > 2 * self.qmax:
            raise QuantError(f"{self.name}: code out of range")  # only a hand-made artifact gets here
        codes = unzigzag(unsigned)
        scale = expect_part(enc, "scale", torch.float16, (rows,)).float()
        return (codes.view(rows, cols).float() * scale[:, None]).reshape(shape).to(dtype)

    def fake_quantizer(self, opts: EncodeOptions = DEFAULTS) -> Callable[[Tensor], Tensor]:
        if opts.clip_sigmas is not None:
            return partial(fake_quant_sigma_rows, qmax=self.qmax, clip_sigmas=opts.clip_sigmas)
        return partial(fake_quant_rows, qmax=self.qmax)

    def error_bound(self, w: Tensor, opts: EncodeOptions = DEFAULTS) -> float:
        if w.numel() == 0:
            return 0.0
        rows = as_rows(w)
        _, scale = row_codes(rows, self.qmax, opts)
        per_row = reconstruction_bound(rows, scale, self.qmax, gptq=opts.hessian is not None)
        top = self.qmax * float(scale.max())
        slack = dequant_slack(w, top)
        return float(per_row.max()) + slack


INTN = {bits: register_scheme(IntNScheme(bits)) for bits in range(4, 8)}
