"""What the artifact reader accepts: bounds checked before anything is trusted or allocated.

An artifact is hostile until proven otherwise, and its header's sizes are claims, not facts. So
every bound here comes from the challenge, never from the file:

- the record cap is 16,000,000 bytes = 128,000,000 bits, and no scheme stores a parameter in
  less than one bit (the binary/ternary records are the floor), so no artifact that could ship
  holds more than `MAX_PARAMS` = 128,000,000 parameters;
- the widest float a scheme stores weights in is fp32 (4 bytes), so those parameters decode to
  at most `MAX_TENSOR_BYTES` = 512,000,000 bytes, which also bounds the payload (the unquantized
  `model_raw.golf` of the largest model is exactly that);
- the manifest is metadata: a few hundred bytes per tensor, so `MAX_MANIFEST_BYTES` (4 MiB, room
  for ~15,000 tensors) and `MAX_JSON_DEPTH` levels of nesting are far above any real one;
- hence the decompressed body is at most `MAX_BODY_BYTES`; a header declaring more is refused
  before one byte is decompressed, and decompression stops at the declared size.

Files are read only if they are regular files (a FIFO or device is never opened for reading in a
way that could block) and no larger than the caller's bound. golf's own limits (record files,
scripts, model configs, scoring memory) build on these in `golf.limits`; docs/limits.md states
the whole policy.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any

import numpy as np

from .errors import QuantError

# The cap's own home is golf.challenge, which quant cannot import: the parameter bound is stated
# here as the number it comes to, and a golf test checks it is CAP_BYTES * 8 // MIN_BITS_PER_PARAM.
MIN_BITS_PER_PARAM = 1  # binary weights: no artifact under the cap stores a parameter in fewer bits
MAX_PARAMS = 128_000_000
WIDEST_BYTES_PER_PARAM = 4  # fp32, the widest float any scheme stores or decodes weights to
MAX_TENSOR_BYTES = MAX_PARAMS * WIDEST_BYTES_PER_PARAM
MAX_MANIFEST_BYTES = 4 << 20
MAX_JSON_DEPTH = 32
MAX_NDIM = 8  # model tensors have at most 4 dims; more is a malformed shape, not a model
MAX_BODY_BYTES = 4 + MAX_MANIFEST_BYTES + MAX_TENSOR_BYTES  # u32 manifest length + manifest + payload
# Incompressible data grows a little under every codec (block headers); 1/64 is far above any of them.
MAX_ARTIFACT_FILE_BYTES = MAX_BODY_BYTES + MAX_BODY_BYTES // 64 + 4096

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_OPEN, _CLOSE = np.frombuffer(b"[{", np.uint8), np.frombuffer(b"]}", np.uint8)


def read_regular_file(path: str | os.PathLike, max_bytes: int, what: str = "file") -> bytes:
    """The bytes of `path` if it is a regular file of at most `max_bytes`; QuantError otherwise.

    Opened non-blocking, so a FIFO is refused at once instead of waiting for a writer; its type
    and size come from the open descriptor, so they are the file actually read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise QuantError(f"{what} not found: {path}") from None
    except OSError as e:
        raise QuantError(f"cannot open {what} {path}: {e.strerror or e}") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise QuantError(f"{what} path is a directory: {path}")
        if not stat.S_ISREG(info.st_mode):
            raise QuantError(f"{what} {path} is not a regular file (FIFOs, devices and sockets are never read)")
        if info.st_size > max_bytes:
            raise QuantError(f"{what} {path} is {info.st_size:,} bytes; golf reads at most {max_bytes:,}")
        try:
            data = f.read(max_bytes + 1)
        except OSError as e:
            raise QuantError(f"cannot read {what} {path}: {e.strerror or e}") from None
    if len(data) > max_bytes:  # it grew after the check
        raise QuantError(f"{what} {path} is over {max_bytes:,} bytes; golf reads at most that")
    return data


def json_depth(text: bytes) -> int:
    """How deeply arrays and objects nest in JSON `text`, found without parsing it (no recursion)."""
    skeleton = np.frombuffer(_STRING.sub(b'""', text), np.uint8)
    steps = np.isin(skeleton, _OPEN).astype(np.int64) - np.isin(skeleton, _CLOSE)
    return int(np.cumsum(steps).max(initial=0))


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not np.isfinite(value):  # 1e999 parses to inf
        raise ValueError(f"{text[:20]} overflows a float")
    return value


def loads_json(text: bytes | str, what: str, max_bytes: int, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse JSON within size and nesting bounds; NaN and Infinity (which Python would accept) are refused."""
    data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    if len(data) > max_bytes:
        raise QuantError(f"{what} is {len(data):,} bytes; golf parses at most {max_bytes:,}")
    depth = json_depth(data)
    if depth > max_depth:
        raise QuantError(f"{what} nests {depth} levels deep; golf parses at most {max_depth}")
    try:
        return json.loads(data.decode("utf-8"), parse_constant=_no_constant, parse_float=_finite_float)
    except UnicodeDecodeError as e:
        raise QuantError(f"{what} is not UTF-8 (byte {e.start})") from None
    except (ValueError, RecursionError) as e:
        raise QuantError(f"{what} is not valid JSON ({e})") from None


def read_json_file(path: str | os.PathLike, what: str, max_bytes: int, max_depth: int = MAX_JSON_DEPTH) -> Any:
    return loads_json(read_regular_file(path, max_bytes, what), f"{what} {Path(path)}", max_bytes, max_depth)
