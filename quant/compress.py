"""Named compressors for the artifact body: zstd-22, zlib-9, lzma, brotli-11 (optional), none.

Every compressor must be deterministic (same bytes in → same bytes out) because artifacts are
compared byte for byte. Decompression is bounded: it never produces more than `max_size` bytes,
so a hostile or corrupted body cannot exhaust memory before the size check.
"""

from __future__ import annotations

import lzma
import zlib
from dataclasses import dataclass
from typing import Callable

import zstandard

try:  # brotli is optional (pip install golf[brotli]); without it the compressor is not registered.
    import brotli
except ImportError:  # pragma: no cover - depends on the environment
    brotli = None

from .errors import QuantError
from .registry import Registry

DEFAULT_COMPRESSOR = "zstd-22"
# Not a stored name: "try every registered compressor and keep the smallest output".
AUTO = "auto"

_CHUNK = 1 << 20

# Raw LZMA2 without the .xz container: the artifact has its own lengths and SHA-256, so the
# container's headers and CRC would only cost bytes.
_LZMA_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}]


@dataclass(frozen=True)
class Compressor:
    name: str
    compress: Callable[[bytes], bytes]
    # (data, limit) → at most limit + 1 bytes (so "too big" differs from "exactly limit"), or a
    # QuantError / the codec's own error for a corrupt or truncated stream.
    decompress_bounded: Callable[[bytes, int], bytes | bytearray]


_COMPRESSORS: Registry[Compressor] = Registry("compressor")


def register_compressor(c: Compressor) -> Compressor:
    # The artifact header stores the name as a u8 length plus ASCII bytes.
    if not (c.name.isascii() and 0 < len(c.name) < 256):
        raise QuantError(f"compressor name {c.name!r} must be 1-255 ASCII characters")
    return _COMPRESSORS.add(c.name, c)


def get_compressor(name: str) -> Compressor:
    return _COMPRESSORS.get(name)


def compressor_names() -> list[str]:
    return _COMPRESSORS.names()


def compress(name: str, data: bytes) -> bytes:
    return get_compressor(name).compress(bytes(data))


def compress_smallest(data: bytes, names: list[str] | None = None) -> tuple[str, bytes]:
    """(name, output) of the compressor giving the fewest bytes; ties go to the first name in order."""
    data = bytes(data)
    best: tuple[str, bytes] | None = None
    for name in names or compressor_names():
        out = get_compressor(name).compress(data)
        if best is None or len(out) < len(best[1]):
            best = (name, out)
    if best is None:
        raise QuantError("no compressor to choose from")
    return best


def decompress(name: str, data: bytes, max_size: int) -> bytes | bytearray:
    """Decompress `data`; raise `QuantError` if it is corrupt, truncated or would exceed `max_size`."""
    c = get_compressor(name)
    try:
        out = c.decompress_bounded(bytes(data), max_size)
    except (zlib.error, lzma.LZMAError, zstandard.ZstdError, *_BROTLI_ERRORS) as e:
        raise QuantError(f"{name}: corrupt compressed data ({e})") from None
    if len(out) > max_size:
        raise QuantError(f"{name}: decompressed data exceeds the expected {max_size} bytes")
    return out


def _zstd_compress(data: bytes) -> bytes:
    # threads=0 keeps compression single-threaded: multi-threaded zstd output can depend on timing.
    return zstandard.ZstdCompressor(level=22, threads=0).compress(data)


def _drain(pull: Callable[[int], bytes], limit: int) -> bytearray:
    """Output of `pull(n)` (up to n more bytes, b"" when done) until done or past `limit`, grown in
    place: one buffer, so a body near the limit costs its size once, not twice."""
    out = bytearray()
    while len(out) <= limit:
        chunk = pull(min(_CHUNK, limit + 1 - len(out)))
        if not chunk:
            break
        out += chunk
    return out


def _zstd_decompress(data: bytes, limit: int) -> bytearray:
    declared = zstandard.frame_content_size(data)  # -1 when the frame does not record it
    if declared < 0:  # golf's writer always records it; without it only `limit` would bound the output
        raise QuantError("zstd-22: the frame does not record its decompressed size")
    if declared > limit:
        raise QuantError(f"zstd-22: frame declares {declared} bytes, more than the expected {limit}")
    # One byte past the declared size is enough to catch a lying frame.
    out = _drain(zstandard.ZstdDecompressor().stream_reader(data).read, declared)
    # The stream reader stops quietly at a cut-off frame; the recorded content size catches that.
    if len(out) < declared:
        raise QuantError(f"zstd-22: truncated stream ({len(out)} of {declared} bytes)")
    if len(out) > declared:
        raise QuantError(f"zstd-22: the frame holds more than the {declared} bytes it declares")
    return out


def _zlib_decompress(data: bytes, limit: int) -> bytearray:
    d = zlib.decompressobj()
    pending = [data]

    def pull(n: int) -> bytes:
        if d.eof:
            return b""
        chunk = d.decompress(pending[0], n)
        pending[0] = d.unconsumed_tail
        return chunk

    out = _drain(pull, limit)
    if len(out) <= limit and not d.eof:
        raise QuantError("zlib-9: truncated stream")
    return out


def _lzma_decompress(data: bytes, limit: int) -> bytearray:
    d = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=_LZMA_FILTERS)
    pending = [data]

    def pull(n: int) -> bytes:
        if d.eof:
            return b""
        chunk, pending[0] = d.decompress(pending[0], max_length=n), b""  # the decoder keeps what it did not use
        return chunk

    out = _drain(pull, limit)
    if len(out) <= limit and not d.eof:
        raise QuantError("lzma: truncated stream")
    return out


def _brotli_decompress(data: bytes, limit: int) -> bytearray:
    d = brotli.Decompressor()
    pending = [data]

    def pull(n: int) -> bytes:
        if d.is_finished():
            return b""
        chunk, pending[0] = d.process(pending[0], output_buffer_limit=n), b""  # later calls continue its output
        return chunk

    out = _drain(pull, limit)
    if len(out) <= limit and not d.is_finished():
        raise QuantError("brotli-11: truncated stream")
    return out


_BROTLI_ERRORS: tuple[type[Exception], ...] = (brotli.error,) if brotli is not None else ()

register_compressor(Compressor("zstd-22", _zstd_compress, _zstd_decompress))
register_compressor(Compressor("zlib-9", lambda d: zlib.compress(d, 9), _zlib_decompress))
register_compressor(Compressor(
    "lzma", lambda d: lzma.compress(d, format=lzma.FORMAT_RAW, filters=_LZMA_FILTERS), _lzma_decompress))
register_compressor(Compressor("none", lambda d: d, lambda d, limit: d[: limit + 1]))
if brotli is not None:
    register_compressor(Compressor("brotli-11", lambda d: brotli.compress(d, quality=11, lgwin=24),
                                   _brotli_decompress))
