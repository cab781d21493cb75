"""Storing N-bit integer codes in bytes, in the layouts the artifact compressors see.

Codes are unsigned (schemes map signed codes first: intN zigzags them) and live in a flat uint8
tensor. Three layouts, measured against each other in bench/quant_suite.py:

- `bits`:   dense little-endian bit stream, code i at bits [i*bits, (i+1)*bits). Exactly
            ceil(n*bits/8) bytes: the smallest before compression, but codes straddle byte
            boundaries, which hides their skewed distribution from a byte-oriented compressor.
- `planes`: one dense bit plane per code bit (plane k = bit k of every code, 8 codes a byte),
            lowest plane first. Same size as `bits`; the high planes are nearly constant for a
            peaked distribution, which compressors exploit.
- `bytes`:  one code per byte. Not bit-packed (bits/8 wasted before compression), but every code
            is byte-aligned so an entropy coder models its distribution directly.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .errors import QuantError

LAYOUTS = ("bits", "planes", "bytes")
# The layout intN schemes use unless a rule says otherwise; chosen by measurement (BENCHMARKS.md).
DEFAULT_LAYOUT = "planes"

_BIT_WEIGHTS = (1 << torch.arange(8, dtype=torch.int32)).to(torch.uint8)


def check_layout(layout: str) -> str:
    if layout not in LAYOUTS:
        raise QuantError(f"unknown code layout {layout!r} (known: {', '.join(LAYOUTS)})")
    return layout


def packed_size(count: int, bits: int, layout: str) -> int:
    """Bytes that `count` codes of `bits` bits occupy in `layout`."""
    if check_layout(layout) == "bytes":
        return count
    if layout == "planes":
        return bits * ((count + 7) // 8)
    return (count * bits + 7) // 8


def _to_bits(codes: Tensor, bits: int) -> Tensor:
    """[n] uint8 codes → [n, bits] 0/1 bits, least significant first."""
    return (codes.to(torch.int32)[:, None] >> torch.arange(bits, dtype=torch.int32)) & 1


def _pack_bitstream(flat_bits: Tensor) -> Tensor:
    """A 0/1 vector → bytes, 8 bits a byte, first bit in the lowest position (zero-padded)."""
    pad = (-flat_bits.numel()) % 8
    padded = torch.cat([flat_bits.to(torch.uint8), torch.zeros(pad, dtype=torch.uint8)])
    return (padded.view(-1, 8) * _BIT_WEIGHTS).sum(dim=1, dtype=torch.int32).to(torch.uint8)


def _unpack_bitstream(packed: Tensor, count: int) -> Tensor:
    bits = (packed.to(torch.int32)[:, None] >> torch.arange(8, dtype=torch.int32)) & 1
    return bits.reshape(-1)[:count]


def pack_codes(codes: Tensor, bits: int, layout: str) -> Tensor:
    """Flat uint8 `codes`, each < 2**bits, → the stored uint8 bytes of `layout`."""
    if not 1 <= bits <= 8:
        raise QuantError(f"code width must be 1..8 bits, got {bits}")
    codes = codes.reshape(-1)
    if codes.dtype != torch.uint8:
        raise QuantError(f"codes must be uint8, got {codes.dtype}")
    if codes.numel() and int(codes.max()) >= 1 << bits:
        raise QuantError(f"a code does not fit in {bits} bits")
    if check_layout(layout) == "bytes":
        return codes.clone()
    bit_matrix = _to_bits(codes, bits)
    if layout == "planes":
        return torch.cat([_pack_bitstream(bit_matrix[:, k]) for k in range(bits)])
    return _pack_bitstream(bit_matrix.reshape(-1))


def unpack_codes(stored: Tensor, bits: int, layout: str, count: int) -> Tensor:
    """The inverse of `pack_codes`: `count` uint8 codes; raises if the byte count is wrong."""
    expected = packed_size(count, bits, layout)
    if stored.dtype != torch.uint8 or stored.numel() != expected:
        raise QuantError(f"{layout} layout of {count} {bits}-bit codes needs {expected} uint8 bytes, "
                         f"got {stored.numel()} {stored.dtype}")
    stored = stored.reshape(-1)
    if layout == "bytes":
        return stored.clone()
    if layout == "planes":
        plane_bytes = (count + 7) // 8
        planes = [_unpack_bitstream(stored[k * plane_bytes:(k + 1) * plane_bytes], count) for k in range(bits)]
        bit_matrix = torch.stack(planes, dim=1)
    else:
        bit_matrix = _unpack_bitstream(stored, count * bits).view(count, bits)
    weights = 1 << torch.arange(bits, dtype=torch.int32)
    return (bit_matrix * weights).sum(dim=1, dtype=torch.int32).to(torch.uint8)
