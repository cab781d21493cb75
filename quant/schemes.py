"""Schemes: how one float tensor becomes stored parts and comes back.

A scheme is stateless and named; the artifact records the name per tensor, so decoding needs
nothing but the manifest and the payload. `Encoded.meta` must be JSON-serializable because it goes
into the manifest verbatim. Parameterized families (int4..int7, group sizes such as `int4g32`)
register one instance per name, so the registry stays a plain name → instance map.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .errors import QuantError
from .packing import DEFAULT_LAYOUT
from .registry import Registry


@dataclass(frozen=True)
class EncodeOptions:
    """Per-tensor choices a rule passes to `Scheme.encode`; schemes ignore what they do not use.

    `layout` is how intN codes are laid out in bytes (see `packing`); `hessian` (the [in, in]
    second moment of the tensor's input activations) switches intN schemes to GPTQ; `clip_sigmas`
    K sets each intN row's step to K times the row's root mean square over qmax instead of searching
    the clip (see `intn.sigma_scale`).
    """

    layout: str = DEFAULT_LAYOUT
    hessian: Tensor | None = None
    clip_sigmas: float | None = None


DEFAULTS = EncodeOptions()


@dataclass
class Encoded:
    """The stored form of one tensor: named tensors (the bytes) plus small JSON metadata."""

    parts: dict[str, Tensor]
    meta: dict = field(default_factory=dict)


class Scheme(ABC):
    """Maps a tensor to `Encoded` and back. Subclasses set `name` and implement the three methods."""

    name: str

    @abstractmethod
    def encode(self, w: Tensor, opts: EncodeOptions = DEFAULTS) -> Encoded:
        """Store `w`. Parts must be CPU tensors that do not alias `w`."""

    @abstractmethod
    def decode(self, enc: Encoded, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
        """Rebuild a tensor of `shape` and `dtype`; raise `QuantError` if the parts do not fit."""

    @abstractmethod
    def error_bound(self, w: Tensor, opts: EncodeOptions = DEFAULTS) -> float:
        """An upper bound on max |w - decode(encode(w))| that this scheme promises for `w`."""

    def fake_quantizer(self, opts: EncodeOptions = DEFAULTS) -> Callable[[Tensor], Tensor] | None:
        """For quantization-aware training: a function rounding a weight to this scheme's grid (as
        `opts` set it) in the forward pass and passing gradients straight through, or None where QAT
        does not apply (float passthroughs, and the official int8 whose gap is already tiny)."""
        return None


def fake_quant_rows(w: Tensor, qmax: int) -> Tensor:
    """`w` rounded to a per-row symmetric grid in the forward pass, identity in the backward pass.

    The grid is absmax-scaled: the encoders' clip search (15 candidate clips per row) would be the
    most expensive op of a CPU step, and absmax is where that search starts.
    """
    scale = w.detach().abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / qmax
    rounded = torch.clamp(torch.round(w.detach() / scale), -qmax, qmax) * scale
    return w + (rounded - w).detach()


def fake_quant_sigma_rows(w: Tensor, qmax: int, clip_sigmas: float) -> Tensor:
    """As `fake_quant_rows` on the grid a K·σ step gives (`intn.sigma_scale`): step K·std/qmax per row."""
    scale = clip_sigmas * w.detach().square().mean(dim=1, keepdim=True).sqrt().clamp_min(1e-12) / qmax
    rounded = torch.clamp(torch.round(w.detach() / scale), -qmax, qmax) * scale
    return w + (rounded - w).detach()


_SCHEMES: Registry[Scheme] = Registry("quantization scheme")


def register_scheme(scheme: Scheme) -> Scheme:
    """Add `scheme` under `scheme.name`; a second scheme with the same name is a bug, so it raises."""
    return _SCHEMES.add(scheme.name, scheme)


def get_scheme(name: str) -> Scheme:
    return _SCHEMES.get(name)


def scheme_names() -> list[str]:
    return _SCHEMES.names()


def expect_part(enc: Encoded, key: str, dtype: torch.dtype, shape: tuple[int, ...]) -> Tensor:
    """The part `key`, checked for dtype and shape, so a malformed artifact fails with a clear message."""
    t = enc.parts.get(key)
    if t is None:
        raise QuantError(f"missing part {key!r} (have: {', '.join(sorted(enc.parts)) or 'none'})")
    if t.dtype != dtype or tuple(t.shape) != tuple(shape):
        raise QuantError(f"part {key!r} is {dtype_name(t.dtype)}{list(t.shape)}, "
                         f"expected {dtype_name(dtype)}{list(shape)}")
    return t


def dtype_name(dtype: torch.dtype) -> str:
    """'float32' for torch.float32: the spelling used in manifests and messages."""
    return str(dtype).removeprefix("torch.")


def require_float(scheme: str, w: Tensor) -> None:
    if not w.is_floating_point():
        raise QuantError(f"scheme {scheme!r} stores float tensors, got {dtype_name(w.dtype)}; use 'raw'")


def represents(wide: torch.dtype, narrow: torch.dtype) -> bool:
    """True when every value of float dtype `narrow` is exactly a value of `wide` (fp32 ⊇ bf16, fp16)."""
    w, n = torch.finfo(wide), torch.finfo(narrow)
    return w.eps <= n.eps and w.max >= n.max and w.smallest_normal * w.eps <= n.smallest_normal * n.eps


def max_abs(w: Tensor) -> float:
    return float(w.detach().abs().max()) if w.numel() else 0.0


def rounding_slack(dtype: torch.dtype, magnitude: float) -> float:
    """Worst-case error of rounding a value of size ≤ `magnitude` to `dtype` (0 for integers).

    Half an ulp relative (eps/2) for normal numbers, plus half the smallest subnormal for values
    that underflow; infinite when `magnitude` overflows the type.
    """
    if not dtype.is_floating_point:
        return 0.0
    info = torch.finfo(dtype)
    if magnitude > info.max:
        return math.inf
    return magnitude * info.eps / 2 + info.smallest_normal * info.eps / 2


def dequant_slack(w: Tensor, top: float) -> float:
    """Float rounding a dequantizer adds for values up to `top`: the fp32 product, the cast back to
    `w`'s dtype, and (for dtypes fp32 cannot hold exactly, i.e. fp64) the cast to fp32 on the way in."""
    slack = rounding_slack(torch.float32, top) + rounding_slack(w.dtype, top)
    if not represents(torch.float32, w.dtype):
        slack += rounding_slack(torch.float32, max_abs(w))
    return slack
