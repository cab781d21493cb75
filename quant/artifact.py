"""The artifact container: one file holding a quantized state dict, readable without pickle.

File layout (little-endian), format version 1:

    offset  size  field
    0       4     magic b"GOLF"
    4       2     u16 format version (1)
    6       1     u8  length n of the compressor name
    7       n     compressor name, ASCII ("zstd-22", "zlib-9", "lzma", "brotli-11", "none")
    7+n     8     u64 length of the body before compression
    15+n    8     u64 length C of the compressed body
    23+n    C     compressed body
    23+n+C  32    SHA-256 of every byte before it

Magic, version and the trailing SHA-256 are the invariants every future version keeps: a reader
checks the magic, then the checksum (which needs no header field, so any flipped byte after the
magic is caught before a length is trusted), then the version, and only then parses the rest.
Every size the file declares is checked against `limits` (derived from the record cap, never
from the file) before it is used: the body's decompressed length, the manifest's length and
nesting, each tensor's shape, and the memory all decoded tensors would take.

Body: u32 manifest length + manifest JSON (UTF-8, sorted keys, compact) + payload. The payload is
the raw little-endian bytes of every part, tensors in sorted name order and parts in sorted part
order within a tensor, packed without padding; manifest offsets are relative to the payload start.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .compress import AUTO, DEFAULT_COMPRESSOR, compress, compress_smallest, decompress, get_compressor
from .errors import ArtifactError, QuantError
from .limits import (MAX_ARTIFACT_FILE_BYTES, MAX_BODY_BYTES, MAX_MANIFEST_BYTES, MAX_NDIM, MAX_PARAMS,
                     MAX_TENSOR_BYTES, loads_json, read_regular_file)
from .rules import QTensor, Rule, dequantize, parse_rule, quantize
from .schemes import Encoded, dtype_name

MAGIC = b"GOLF"
FORMAT_NAME = "golf-artifact"
FORMAT_VERSION = 1

_HEAD = struct.Struct("<4sHB")  # magic, format version, compressor-name length
_SIZES = struct.Struct("<QQ")  # body length before and after compression
_U32 = struct.Struct("<I")  # manifest length
_DIGEST = 32
_MIN_SIZE = _HEAD.size + _SIZES.size + _DIGEST  # an artifact with an empty compressor name

# Manifest dtype name → (torch dtype, little-endian numpy dtype of the stored bytes).
_DTYPES: dict[str, tuple[torch.dtype, str]] = {
    "float32": (torch.float32, "<f4"), "float64": (torch.float64, "<f8"), "float16": (torch.float16, "<f2"),
    # numpy has no bfloat16: its bits travel as int16 and are viewed back.
    "bfloat16": (torch.bfloat16, "<i2"),
    "int8": (torch.int8, "i1"), "uint8": (torch.uint8, "u1"), "int16": (torch.int16, "<i2"),
    "int32": (torch.int32, "<i4"), "int64": (torch.int64, "<i8"), "bool": (torch.bool, "?"),
}


@dataclass(frozen=True)
class ArtifactInfo:
    path: Path
    nbytes: int
    sha256: str  # hex digest of the whole file, as `sha256sum` prints it


@dataclass
class Artifact:
    meta: dict
    rule: str
    state_dict: dict[str, Tensor]
    manifest: dict
    compressor: str
    nbytes: int


@dataclass
class QuantizedArtifact:
    """An artifact's tensors exactly as stored: scheme, shape, dtype and parts (codes, scales, ...)
    with the scheme's metadata (bits, layout, group), nothing dequantized. What an exporter needs
    to reuse the stored bytes, e.g. the tied int4 table for onnxruntime."""

    meta: dict
    rule: str
    tensors: dict[str, QTensor]
    manifest: dict
    compressor: str
    nbytes: int


# ----------------------------------------------------------------------------- writing


def _known_dtype(dtype: torch.dtype) -> str:
    name = dtype_name(dtype)
    if name not in _DTYPES:
        raise QuantError(f"dtype {name} cannot be stored (supported: {', '.join(_DTYPES)})")
    return name


def _tensor_bytes(t: Tensor) -> bytes:
    t = t.detach().to("cpu").contiguous()
    carrier = t.view(torch.int16) if t.dtype == torch.bfloat16 else t
    return carrier.numpy().astype(_DTYPES[_known_dtype(t.dtype)][1], copy=False).tobytes()


def _layout(quantized: Mapping[str, QTensor]) -> tuple[dict, list[bytes]]:
    """Manifest tensor entries and the payload chunks, both in the canonical sorted order."""
    entries: dict[str, dict] = {}
    chunks: list[bytes] = []
    offset = 0
    for name in sorted(quantized):
        qt = quantized[name]
        parts = {}
        try:
            for key in sorted(qt.enc.parts):
                part = qt.enc.parts[key]
                raw = _tensor_bytes(part)
                parts[key] = {"dtype": _known_dtype(part.dtype), "shape": list(part.shape),
                              "offset": offset, "nbytes": len(raw)}
                chunks.append(raw)
                offset += len(raw)
            dtype = _known_dtype(qt.dtype)
        except QuantError as e:
            raise QuantError(f"{name}: {e}") from None
        entries[name] = {"scheme": qt.scheme, "shape": list(qt.shape), "dtype": dtype,
                         "meta": qt.enc.meta, "parts": parts}
    return entries, chunks


def _json_bytes(obj: dict) -> bytes:
    try:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as e:
        raise ArtifactError(f"manifest is not plain JSON (check meta): {e}") from None


def encode_artifact(state_dict: Mapping[str, Tensor], *, rule: str | Rule = "int8", roles: Mapping[str, str],
                    meta: dict, compressor: str = DEFAULT_COMPRESSOR,
                    hessians: Mapping[str, Tensor] | None = None) -> bytes:
    """Quantize `state_dict` by `rule` and return the artifact bytes. Same inputs, same bytes.

    `roles` maps every tensor to its model role (the rule's groups). The roles are not stored: a
    reader gets them back from the model the manifest's meta describes.
    `compressor="auto"` tries every registered compressor and records the one that won.
    `hessians` feed rules with gptq=1 (see `quantize`).
    """
    parsed = parse_rule(rule)
    if compressor != AUTO:
        get_compressor(compressor)  # fail fast, before quantizing
    entries, chunks = _layout(quantize(state_dict, parsed, roles=roles, hessians=hessians))
    manifest = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "rule": parsed.spec,
                "meta": meta, "tensors": entries}
    manifest_bytes = _json_bytes(manifest)
    return _frame(b"".join([_U32.pack(len(manifest_bytes)), manifest_bytes, *chunks]), compressor)


def _frame(body: bytes, compressor: str) -> bytes:
    """Compress `body` and wrap it in the header and checksum."""
    if compressor == AUTO:
        compressor, packed = compress_smallest(body)
    else:
        packed = compress(compressor, body)
    name = compressor.encode("ascii")
    data = b"".join([_HEAD.pack(MAGIC, FORMAT_VERSION, len(name)), name,
                     _SIZES.pack(len(body), len(packed)), packed])
    return data + hashlib.sha256(data).digest()


def recompress_artifact(data: bytes, compressor: str) -> bytes:
    """The same artifact (same manifest and payload, byte for byte) under another compressor."""
    return _frame(_unframe(bytes(data))[1], compressor)


def write_artifact(path: str | os.PathLike, state_dict: Mapping[str, Tensor], *, rule: str | Rule = "int8",
                   roles: Mapping[str, str], meta: dict, compressor: str = DEFAULT_COMPRESSOR,
                   hessians: Mapping[str, Tensor] | None = None) -> ArtifactInfo:
    """Encode and write atomically: readers see the old file or the complete new one, never a part."""
    path = Path(path)
    data = encode_artifact(state_dict, rule=rule, roles=roles, meta=meta, compressor=compressor,
                           hessians=hessians)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; an artifact is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return ArtifactInfo(path, len(data), hashlib.sha256(data).hexdigest())


# ----------------------------------------------------------------------------- reading


def _declared_size(data: bytes) -> int:
    """The file size the (unverified) header claims; only used to word a checksum failure."""
    name_len = data[_HEAD.size - 1]
    sizes_at = _HEAD.size + name_len
    if len(data) < sizes_at + _SIZES.size:
        return sizes_at + _SIZES.size + _DIGEST
    return sizes_at + _SIZES.size + _SIZES.unpack_from(data, sizes_at)[1] + _DIGEST


def _unframe(data: bytes) -> tuple[str, bytes | bytearray]:
    """Verify the frame and return (compressor name, decompressed body)."""
    n = len(data)
    if n >= len(MAGIC) and data[: len(MAGIC)] != MAGIC:
        raise ArtifactError("not a golf artifact (bad magic bytes)")
    if n < _MIN_SIZE:
        raise ArtifactError(f"artifact truncated: expected at least {_MIN_SIZE} bytes, got {n}")
    if hashlib.sha256(data[:-_DIGEST]).digest() != data[-_DIGEST:]:
        declared = _declared_size(data)
        if declared > n:
            raise ArtifactError(f"artifact truncated: expected {declared} bytes, got {n}")
        raise ArtifactError("corrupted: checksum mismatch")
    _, version, name_len = _HEAD.unpack_from(data)
    if version > FORMAT_VERSION:
        raise ArtifactError(f"artifact format v{version} is newer than this golf supports "
                            f"(v{FORMAT_VERSION}); upgrade golf")
    if version < 1:
        raise ArtifactError(f"artifact format v{version} is not a valid version")
    # The checksum holds, so a bad field below means a broken writer, not a damaged file.
    sizes_at = _HEAD.size + name_len
    body_at = sizes_at + _SIZES.size
    if body_at + _DIGEST > n:
        raise ArtifactError("malformed header: compressor name runs past the end of the file")
    raw_len, packed_len = _SIZES.unpack_from(data, sizes_at)
    if raw_len > MAX_BODY_BYTES:
        raise ArtifactError(f"body declares {raw_len:,} bytes decompressed; golf decompresses at most "
                            f"{MAX_BODY_BYTES:,} ({MAX_PARAMS:,} parameters, the most the challenge's cap allows, "
                            "in fp32)")
    if body_at + packed_len + _DIGEST != n:
        raise ArtifactError(f"malformed header: declares a {packed_len}-byte body, "
                            f"the file holds {n - body_at - _DIGEST}")
    try:
        name = data[_HEAD.size:sizes_at].decode("ascii")
    except UnicodeDecodeError:
        raise ArtifactError("malformed header: compressor name is not ASCII") from None
    try:
        get_compressor(name)
    except QuantError as e:
        raise ArtifactError(str(e)) from None
    try:
        body = decompress(name, data[body_at:body_at + packed_len], raw_len)
    except QuantError as e:
        raise ArtifactError(f"cannot decompress body: {e}") from None
    if len(body) != raw_len:
        raise ArtifactError(f"malformed body: {len(body)} bytes after decompression, header says {raw_len}")
    return name, body


def _malformed(what: str) -> ArtifactError:
    return ArtifactError(f"malformed manifest: {what}")


def _is_count(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _split_body(body: bytes | bytearray) -> tuple[dict, memoryview]:
    """(manifest, payload) from a decompressed body, with the manifest's top level validated."""
    end = _U32.size + (_U32.unpack_from(body)[0] if len(body) >= _U32.size else 0)
    if end > len(body):
        raise _malformed("its length runs past the end of the body")
    try:
        manifest = loads_json(body[_U32.size:end], "manifest", MAX_MANIFEST_BYTES)
    except QuantError as e:
        raise ArtifactError(f"malformed {e}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise _malformed(f"'format' is not {FORMAT_NAME!r}")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise _malformed(f"'format_version' is {manifest.get('format_version')!r}, the header says {FORMAT_VERSION}")
    for key, kind in (("rule", str), ("meta", dict), ("tensors", dict)):
        if not isinstance(manifest.get(key), kind):
            raise _malformed(f"{key!r} is missing or not a {kind.__name__}")
    return manifest, memoryview(body)[end:]


def _tensor_from(payload: memoryview, offset: int, dtype: str, shape: tuple[int, ...]) -> Tensor:
    torch_dtype, np_dtype = _DTYPES[dtype]
    # np.array copies into native byte order, so the tensor owns writable memory.
    arr = np.array(np.frombuffer(payload, dtype=np_dtype, count=math.prod(shape), offset=offset),
                   dtype=np.dtype(np_dtype).newbyteorder("="))
    t = torch.from_numpy(arr)
    return (t.view(torch.bfloat16) if torch_dtype == torch.bfloat16 else t).reshape(shape)


def _shape(x: object, what: str) -> tuple[int, ...]:
    if not isinstance(x, list) or len(x) > MAX_NDIM or not all(_is_count(d) and d <= MAX_PARAMS for d in x):
        raise _malformed(f"{what}: shape {str(x)[:80]} is not a list of at most {MAX_NDIM} sizes "
                         f"of at most {MAX_PARAMS:,}")
    return tuple(x)


def _dtype(x: object, what: str) -> str:
    if not isinstance(x, str) or x not in _DTYPES:
        raise _malformed(f"{what}: unknown dtype {str(x)[:40]!r}")
    return x


def _nbytes(dtype: str, shape: tuple[int, ...]) -> int:
    return math.prod(shape) * np.dtype(_DTYPES[dtype][1]).itemsize


@dataclass(frozen=True)
class _Part:
    """A part's manifest entry, checked against the payload but not yet read."""

    dtype: str
    shape: tuple[int, ...]
    offset: int


def _check_part(payload_nbytes: int, what: str, spec: object) -> _Part:
    if not isinstance(spec, dict):
        raise _malformed(f"{what}: not an object")
    dtype, shape = _dtype(spec.get("dtype"), what), _shape(spec.get("shape"), what)
    offset, nbytes = spec.get("offset"), spec.get("nbytes")
    if not (_is_count(offset) and _is_count(nbytes)):
        raise _malformed(f"{what}: offset/nbytes must be non-negative integers")
    needed = _nbytes(dtype, shape)
    if nbytes != needed:
        raise _malformed(f"{what}: {nbytes} bytes declared, {dtype}{list(shape)} needs {needed}")
    if offset + nbytes > payload_nbytes:
        raise ArtifactError(f"part {what} at bytes {offset}..{offset + nbytes} is outside the "
                            f"{payload_nbytes}-byte payload")
    return _Part(dtype, shape, offset)


def _read_tensors(manifest: dict, payload: memoryview) -> dict[str, QTensor]:
    """Check every entry and the memory the decoded tensors will take; only then read any part."""
    checked = []
    decoded = stored = 0
    for name, entry in manifest["tensors"].items():
        if not isinstance(entry, dict) or not isinstance(entry.get("scheme"), str) \
                or not isinstance(entry.get("meta"), dict) or not isinstance(entry.get("parts"), dict):
            raise _malformed(f"tensor {name!r} needs 'scheme', 'meta' and 'parts'")
        parts = {key: _check_part(len(payload), f"{name}.{key}", spec) for key, spec in entry["parts"].items()}
        dtype, shape = _dtype(entry.get("dtype"), name), _shape(entry.get("shape"), name)
        decoded += _nbytes(dtype, shape)
        stored += sum(_nbytes(p.dtype, p.shape) for p in parts.values())
        checked.append((name, entry, parts, dtype, shape))
    # golf's writer tiles the payload with the parts; parts that overlap could make each byte be
    # copied out many times over.
    if stored > len(payload):
        raise _malformed(f"its parts declare {stored:,} bytes in all, more than the {len(payload):,}-byte payload")
    if decoded > MAX_TENSOR_BYTES:
        raise ArtifactError(f"tensors would decode to {decoded:,} bytes; golf decodes at most {MAX_TENSOR_BYTES:,} "
                            f"({MAX_PARAMS:,} parameters, the most the challenge's cap allows, in fp32)")
    out: dict[str, QTensor] = {}
    for name, entry, parts, dtype, shape in checked:
        tensors = {key: _tensor_from(payload, p.offset, p.dtype, p.shape) for key, p in parts.items()}
        out[name] = QTensor(entry["scheme"], Encoded(tensors, entry["meta"]), shape, _DTYPES[dtype][0])
    return out


def decode_quantized(data: bytes) -> QuantizedArtifact:
    """Verify and take apart artifact bytes without dequantizing any tensor. Every part is checked
    against its declared dtype, shape and the payload bounds, as `decode_artifact` does."""
    data = bytes(data)
    compressor, body = _unframe(data)
    manifest, payload = _split_body(body)
    return QuantizedArtifact(manifest["meta"], manifest["rule"], _read_tensors(manifest, payload), manifest,
                             compressor, len(data))


def read_quantized(path: str | os.PathLike) -> QuantizedArtifact:
    """The artifact at `path`, its tensors as stored (see `decode_quantized`)."""
    data = _read_bytes(path)
    try:
        return decode_quantized(data)
    except ArtifactError as e:
        raise ArtifactError(f"{path}: {e}") from None


def decode_artifact(data: bytes) -> Artifact:
    """Verify, decompress and dequantize artifact bytes; raise `ArtifactError` on any problem."""
    stored = decode_quantized(data)
    try:
        state_dict = dequantize(stored.tensors)
    except QuantError as e:
        raise ArtifactError(f"cannot decode tensor {e}") from None
    return Artifact(stored.meta, stored.rule, state_dict, stored.manifest, stored.compressor, stored.nbytes)


def _read_bytes(path: str | os.PathLike) -> bytes:
    try:
        return read_regular_file(path, MAX_ARTIFACT_FILE_BYTES, "artifact")
    except QuantError as e:
        raise ArtifactError(str(e)) from None


def read_artifact(path: str | os.PathLike) -> Artifact:
    data = _read_bytes(path)
    try:
        return decode_artifact(data)
    except ArtifactError as e:
        raise ArtifactError(f"{path}: {e}") from None


def read_manifest(path: str | os.PathLike) -> dict:
    """The verified manifest of the artifact at `path`, without decoding any tensor."""
    data = _read_bytes(path)
    try:
        return _split_body(_unframe(data)[1])[0]
    except ArtifactError as e:
        raise ArtifactError(f"{path}: {e}") from None


# ----------------------------------------------------------------------------- raw access


@dataclass(frozen=True)
class RawArtifact:
    """A verified artifact taken apart but not decoded, for tools that account for its bytes.

    nbytes == header_nbytes + body_nbytes + digest_nbytes. The decompressed `body` is the u32
    manifest length, the `manifest_nbytes` manifest JSON bytes, then `payload` (a view of `body`).
    """

    compressor: str
    nbytes: int  # the whole file
    header_nbytes: int  # everything before the compressed body
    body_nbytes: int  # the compressed body
    digest_nbytes: int  # the trailing SHA-256
    manifest: dict
    manifest_nbytes: int
    body: bytes | bytearray
    payload: memoryview


def open_raw(source: str | os.PathLike | bytes) -> RawArtifact:
    """Verify the frame and split the body of an artifact (a path, or its bytes); tensors stay undecoded."""
    data = bytes(source) if isinstance(source, (bytes, bytearray, memoryview)) else _read_bytes(source)
    try:
        compressor, body = _unframe(data)
        manifest, payload = _split_body(body)
    except ArtifactError as e:
        if isinstance(source, (bytes, bytearray, memoryview)):
            raise
        raise ArtifactError(f"{source}: {e}") from None
    header = _HEAD.size + len(compressor) + _SIZES.size  # the name is ASCII: one byte per character
    return RawArtifact(compressor, len(data), header, len(data) - header - _DIGEST, _DIGEST, manifest,
                       len(body) - _U32.size - len(payload), body, payload)
