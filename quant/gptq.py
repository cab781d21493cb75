"""GPTQ: round a weight matrix column by column, pushing each column's error onto the rest.

Frantar et al. 2022. For a linear layer y = x Wᵀ with input second moment H = E[x xᵀ], rounding
W to Ŵ costs tr((W-Ŵ) H (W-Ŵ)ᵀ) in output error. Quantizing input column j and spreading its
rounding error over the not-yet-quantized columns through the inverse Hessian's Cholesky factor
minimizes that cost greedily; plain rounding ignores H. The per-row scales are fixed beforehand
(by the clip search), so GPTQ only chooses codes and the decoder is the ordinary intN decoder.

Columns are processed in their natural order (no act-order permutation): the decoder then needs
no permutation either, and on these small models act-order was not needed to beat rounding.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .errors import QuantError

BLOCK_COLUMNS = 128
# Dampening, as a fraction of the mean diagonal, keeps H invertible when some inputs barely vary.
DAMP = 0.01


def _inverse_cholesky(h: Tensor) -> Tensor:
    """Upper Cholesky factor of H⁻¹ (H damped until it factorizes)."""
    damp = DAMP * float(h.diagonal().mean().clamp_min(1e-12))
    eye = torch.eye(h.shape[0], dtype=h.dtype)
    for _ in range(6):
        factor, info = torch.linalg.cholesky_ex(h + damp * eye)
        if int(info) == 0:
            inverse = torch.cholesky_inverse(factor)
            return torch.linalg.cholesky(inverse, upper=True)
        damp *= 10  # numerically singular: more dampening, as reference GPTQ implementations do
    raise QuantError("GPTQ: the calibration Hessian is not positive definite even after dampening")


def gptq_codes(w: Tensor, hessian: Tensor, scale: Tensor, qmax: int) -> Tensor:
    """Signed integer codes in [-qmax, qmax] for `w` [rows, cols] with per-row `scale` [rows]."""
    rows, cols = w.shape
    if tuple(hessian.shape) != (cols, cols):
        raise QuantError(f"GPTQ: Hessian is {list(hessian.shape)}, the weight has {cols} input columns")
    w = w.to(torch.float64).clone()
    h = hessian.to(torch.float64).clone()
    # Inputs that were always zero carry no information: fix their columns at zero.
    dead = h.diagonal() == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    hinv = _inverse_cholesky(h)
    s = scale.to(torch.float64)
    codes = torch.zeros(rows, cols, dtype=torch.int32)
    for start in range(0, cols, BLOCK_COLUMNS):
        end = min(start + BLOCK_COLUMNS, cols)
        block = w[:, start:end].clone()
        errors = torch.zeros_like(block)
        hblock = hinv[start:end, start:end]
        for j in range(end - start):
            column = block[:, j]
            q = torch.clamp(torch.round(column / s), -qmax, qmax)
            codes[:, start + j] = q.to(torch.int32)
            err = (column - q * s) / hblock[j, j]
            block[:, j:] -= err[:, None] * hblock[j, j:][None, :]
            errors[:, j] = err
        # Lazy batch update: the rest of the matrix sees this block's errors in one matmul.
        w[:, end:] -= errors @ hinv[start:end, end:]
    return codes
