"""The challenge's token shard format and the baseline's train/val loaders.

A shard is 256 little-endian int32 (magic 20240520, version 1, token count N, zeros) followed by
N little-endian uint16 tokens, and its size is exactly 1024 + 2N bytes. Training reads shards in
sorted order, sequentially, wrapping around forever (no shuffling, no document masking), and
splits every batch across ranks exactly as the official `train_gpt.py` does, so a run here sees
the same tokens in the same order as a run of the baseline.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

import numpy as np
import torch

from golf.errors import GolfError

SHARD_MAGIC = 20240520
SHARD_VERSION = 1
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
TOKEN_DTYPE = np.dtype("<u2")
MAX_TOKEN_ID = 2**16 - 1
BYTE_SIDECAR_PREFIX = "fineweb_val_bytes_"


class ShardError(GolfError):
    """A shard file is missing, malformed, or holds ids outside the tokenizer's vocabulary."""


@contextlib.contextmanager
def atomic_writer(path: str | Path) -> Iterator[IO[bytes]]:
    """Open a temp file next to `path`; rename it over `path` only if the block succeeds.

    A crash or an error midway leaves no file at `path`, so a partial write never looks complete.
    """
    path = Path(path)
    # Not mkstemp: its 0o600 mode would make finished files private; open() honours the umask.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.part")
    try:
        with open(tmp, "xb") as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_shard(path: str | Path, tokens: Sequence[int] | np.ndarray | torch.Tensor) -> None:
    """Write `tokens` as a challenge shard at `path`, atomically."""
    arr = tokens.numpy() if isinstance(tokens, torch.Tensor) else np.asarray(tokens)
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ShardError(f"{path}: tokens must be integers, got dtype {arr.dtype}")
    arr = arr.reshape(-1)
    if arr.size >= 2**31:
        raise ShardError(f"{path}: {arr.size} tokens is too many for one shard (header count is int32)")
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) > MAX_TOKEN_ID):
        bad = int(np.flatnonzero((arr < 0) | (arr > MAX_TOKEN_ID))[0])
        raise ShardError(f"{path}: token {int(arr[bad])} at position {bad} does not fit in uint16 (0..65535)")
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[:3] = (SHARD_MAGIC, SHARD_VERSION, arr.size)
    with atomic_writer(path) as f:
        f.write(header.tobytes())
        f.write(arr.astype(TOKEN_DTYPE, copy=False).tobytes())


def shard_token_count(path: str | Path) -> int:
    """Token count N from the header, after checking magic, version and that size is 1024 + 2N."""
    path = Path(path)
    if not path.is_file():
        raise ShardError(f"{path}: shard file not found")
    size = path.stat().st_size
    if size < HEADER_BYTES:
        raise ShardError(f"{path}: file is {size} bytes, shorter than the {HEADER_BYTES}-byte shard header")
    magic, version, count = (int(v) for v in np.fromfile(path, dtype="<i4", count=3))
    if magic != SHARD_MAGIC:
        raise ShardError(f"{path}: bad magic {magic} (expected {SHARD_MAGIC}); not a challenge token shard")
    if version != SHARD_VERSION:
        raise ShardError(f"{path}: unsupported shard version {version} (expected {SHARD_VERSION})")
    if count < 0:
        raise ShardError(f"{path}: header token count {count} is negative; the header is corrupt")
    expected = HEADER_BYTES + 2 * count
    if size < expected:
        raise ShardError(f"{path}: truncated: header says {count} tokens ({expected} bytes) "
                         f"but the file has {size} bytes")
    if size != expected:
        raise ShardError(f"{path}: token count mismatch: header says {count} tokens ({expected} bytes) "
                         f"but the file has {size} bytes")
    return count


def read_shard(path: str | Path, vocab_size: int | None = None) -> np.ndarray:
    """All tokens of a validated shard as uint16; with `vocab_size`, every id must be below it."""
    count = shard_token_count(path)
    tokens = np.fromfile(path, dtype=TOKEN_DTYPE, count=count, offset=HEADER_BYTES).astype(np.uint16, copy=False)
    if vocab_size is not None and count and int(tokens.max()) >= vocab_size:
        pos = int(np.argmax(tokens >= vocab_size))
        raise ShardError(f"{path}: token id {int(tokens[pos])} at position {pos} is outside the vocabulary "
                         f"(vocab_size {vocab_size}); shard and tokenizer do not match")
    return tokens


def is_byte_sidecar(path: str | Path) -> bool:
    """`fineweb_val_bytes_*.bin`: per-token byte counts beside the val shards (golf.sidecar), not tokens."""
    return Path(path).name.startswith(BYTE_SIDECAR_PREFIX)


def find_shards(data: str | Path, split: str) -> list[Path]:
    """Sorted `fineweb_{split}_*.bin` token shards in directory `data`, or the files matching glob
    `data`; byte sidecars (which `fineweb_val_*.bin` also matches) are never token shards."""
    if Path(data).is_dir():
        files = sorted(p for p in Path(data).glob(f"fineweb_{split}_*.bin") if not is_byte_sidecar(p))
        searched = f"fineweb_{split}_*.bin shards in {data}"
    else:
        files = sorted(Path(p) for p in glob.glob(str(data)) if not is_byte_sidecar(p))
        searched = f"files matching {data} that are token shards (byte sidecars {BYTE_SIDECAR_PREFIX}*.bin are not)"
    if not files:
        raise GolfError(f"no {searched} (get shards with `golf data fetch` or `golf data build`)")
    return files


class TokenStream:
    """The shards' tokens in order, one shard in memory at a time, wrapping around forever."""

    def __init__(self, files: Sequence[str | Path], vocab_size: int | None = None) -> None:
        if not files:
            raise GolfError("no shard files given to read tokens from")
        self.files = [Path(f) for f in files]
        self.vocab_size = vocab_size
        # Headers are cheap to check up front, and an all-empty set would make take() spin forever.
        if sum(shard_token_count(f) for f in self.files) == 0:
            raise GolfError(f"all {len(self.files)} shards are empty, starting with {self.files[0]}")
        self.file_idx = 0
        self.tokens = read_shard(self.files[0], vocab_size)
        self.pos = 0

    def _next_file(self) -> None:
        self.file_idx = (self.file_idx + 1) % len(self.files)
        self.tokens = read_shard(self.files[self.file_idx], self.vocab_size)
        self.pos = 0

    def take(self, n: int) -> torch.Tensor:
        """The next `n` tokens as int64, crossing shard boundaries."""
        parts: list[np.ndarray] = []
        remaining = n
        while remaining > 0:
            avail = len(self.tokens) - self.pos
            if avail <= 0:
                self._next_file()
                continue
            k = min(remaining, avail)
            parts.append(self.tokens[self.pos:self.pos + k])
            self.pos += k
            remaining -= k
        joined = np.concatenate(parts) if parts else np.empty(0, dtype=np.uint16)
        return torch.from_numpy(joined.astype(np.int64))


class DistributedTokenLoader:
    """Per-rank training batches with the official baseline's chunking.

    Each call takes one contiguous chunk of (local_tokens + 1) * world_size tokens from a shared
    stream; rank r keeps its own slice of local_tokens + 1, so targets reach one token past the
    inputs. Every rank reads the same stream, so ranks stay in step without communication.
    """

    def __init__(self, files: Sequence[str | Path], rank: int, world_size: int,
                 vocab_size: int | None = None) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world_size {world_size}")
        self.rank = rank
        self.world_size = world_size
        self.stream = TokenStream(files, vocab_size)

    def next_batch(self, global_tokens: int, seq_len: int, grad_accum_steps: int) -> torch.Tensor:
        """int64 windows [B, seq_len + 1]: inputs are w[:, :-1] and targets w[:, 1:]."""
        local_tokens = global_tokens // (self.world_size * grad_accum_steps)
        if local_tokens <= 0 or local_tokens % seq_len:
            raise GolfError(f"batch of {global_tokens} tokens / (world_size {self.world_size} x grad_accum "
                            f"{grad_accum_steps}) = {local_tokens} tokens per micro-batch, which must be a "
                            f"positive multiple of seq_len {seq_len}; change TRAIN_BATCH_TOKENS or TRAIN_SEQ_LEN")
        span = local_tokens + 1
        chunk = self.stream.take(span * self.world_size)
        local = chunk[self.rank * span:(self.rank + 1) * span]
        # unfold gives overlapping views; a contiguous copy moves to the device in one transfer.
        return local.unfold(0, seq_len + 1, seq_len).contiguous()


def usable_tokens(n_tokens: int, seq_len: int, what: str) -> int:
    """Length floor((N-1)/seq_len)*seq_len + 1 that holds whole windows, as the baseline truncates."""
    usable = (n_tokens - 1) // seq_len * seq_len
    if usable <= 0:
        raise GolfError(f"{what} has {n_tokens} tokens, fewer than seq_len + 1 = {seq_len + 1}")
    return usable + 1


def load_val_tokens(files: Sequence[str | Path], seq_len: int, max_tokens: int | None = None,
                    vocab_size: int | None = None) -> torch.Tensor:
    """All val shards concatenated (int64), capped to `max_tokens`, truncated to whole windows."""
    if not files:
        raise GolfError("no validation shard files given")
    tokens = np.concatenate([read_shard(f, vocab_size) for f in files])
    if max_tokens is not None:
        tokens = tokens[:max_tokens]
    what = f"the validation split ({len(files)} shards from {Path(files[0]).parent})"
    tokens = tokens[:usable_tokens(len(tokens), seq_len, what)]
    return torch.from_numpy(tokens.astype(np.int64))


def val_windows(tokens: torch.Tensor, seq_len: int) -> torch.Tensor:
    """Non-overlapping eval windows [N, seq_len + 1]: window i is tokens[i*seq_len : (i+1)*seq_len + 1].

    A view, not a copy: the val split is large and windows share their boundary token.
    """
    usable = usable_tokens(tokens.numel(), seq_len, "the validation token tensor")
    return tokens[:usable].unfold(0, seq_len + 1, seq_len)


def rank_slice(n_items: int, rank: int, world_size: int) -> range:
    """This rank's contiguous share of `n_items`; the first n_items % world_size ranks get one extra."""
    base, extra = divmod(n_items, world_size)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (rank < extra))
