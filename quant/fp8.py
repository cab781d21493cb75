"""fp8e4m3 per-row scaled (`fp8e4m3`, alias rule value `fp8`).

Each row is scaled so its max |w| maps to 448, the largest e4m3 value, then cast to
`torch.float8_e4m3fn` (one byte, 3 mantissa bits). The cast does not saturate (out-of-range
values become NaN), so values are clamped to ±448 first. The artifact stores the fp8 bits as
uint8 (its reader knows no fp8 dtype) plus one fp16 scale per row.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .intn import as_rows, fp16_scale, row_meta
from .schemes import (DEFAULTS, Encoded, EncodeOptions, Scheme, dequant_slack, expect_part, register_scheme,
                      require_float)

FP8_MAX = 448.0
# Half an ulp of e4m3: 2^-4 of the value for normals, half the smallest subnormal (2^-9) below.
_REL_HALF_ULP = 2.0**-4
_ABS_HALF_ULP = 2.0**-10


class Fp8Scheme(Scheme):
    name = "fp8e4m3"

    def encode(self, w: Tensor, opts: EncodeOptions = DEFAULTS) -> Encoded:
        require_float(self.name, w)
        rows = as_rows(w)
        scale = fp16_scale(rows.abs().amax(dim=1) / FP8_MAX)
        scaled = torch.clamp(rows / scale[:, None], -FP8_MAX, FP8_MAX)
        data = scaled.to(torch.float8_e4m3fn).view(torch.uint8)
        return Encoded({"data": data.contiguous(), "scale": scale.to(torch.float16)},
                       {"rows": rows.shape[0], "cols": rows.shape[1]})

    def decode(self, enc: Encoded, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
        rows, cols = row_meta(enc, shape, self.name)
        data = expect_part(enc, "data", torch.uint8, (rows, cols))
        scale = expect_part(enc, "scale", torch.float16, (rows,)).float()
        values = data.view(torch.float8_e4m3fn).float()
        return (values * scale[:, None]).reshape(shape).to(dtype)

    def error_bound(self, w: Tensor, opts: EncodeOptions = DEFAULTS) -> float:
        if w.numel() == 0:
            return 0.0
        rows = as_rows(w)
        absmax = rows.abs().amax(dim=1)
        scale = fp16_scale(absmax / FP8_MAX)
        # The fp16-rounded scale can leave max|w|/s slightly above 448: the clamp then cuts it.
        clipped = (absmax - FP8_MAX * scale).clamp_min(0)
        per_row = clipped + absmax * _REL_HALF_ULP + scale * _ABS_HALF_ULP
        return float(per_row.max()) + dequant_slack(w, FP8_MAX * float(scale.max()))


FP8 = register_scheme(Fp8Scheme())
