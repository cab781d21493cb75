"""Shard format, loaders and `golf data info`: checked against the official baseline's semantics."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from golf.data import (
    HEADER_BYTES,
    SHARD_MAGIC,
    DistributedTokenLoader,
    ShardError,
    TokenStream,
    atomic_writer,
    find_shards,
    load_val_tokens,
    rank_slice,
    read_shard,
    shard_token_count,
    val_windows,
    write_shard,
)
from conftest import run_cli
from golf.errors import GolfError


def make_shards(folder: Path, split: str, sizes: list[int], start: int = 0) -> tuple[list[Path], np.ndarray]:
    """Shards of consecutive ids (so every token in a small test is distinct) and their concatenation."""
    folder.mkdir(parents=True, exist_ok=True)
    files, offset = [], start
    for i, n in enumerate(sizes):
        files.append(folder / f"fineweb_{split}_{i:06d}.bin")
        write_shard(files[-1], np.arange(offset, offset + n))
        offset += n
    return files, np.arange(start, offset)



# --- format ---------------------------------------------------------------------------------

def test_shard_round_trip_and_layout(tmp_path):
    tokens = np.random.default_rng(0).integers(0, 65536, size=1000)
    path = tmp_path / "s.bin"
    write_shard(path, tokens)
    raw = path.read_bytes()
    assert len(raw) == HEADER_BYTES + 2 * 1000
    assert struct.unpack("<3i", raw[:12]) == (SHARD_MAGIC, 1, 1000)
    assert raw[12:HEADER_BYTES] == bytes(HEADER_BYTES - 12)
    assert struct.unpack("<H", raw[HEADER_BYTES:HEADER_BYTES + 2])[0] == tokens[0]
    got = read_shard(path)
    assert got.dtype == np.uint16 and np.array_equal(got, tokens)
    assert shard_token_count(path) == 1000
    write_shard(path, torch.tensor([5, 6, 7]))  # tensors and lists too, replacing atomically
    assert read_shard(path).tolist() == [5, 6, 7]
    write_shard(path, [])
    assert read_shard(path).size == 0


@pytest.mark.parametrize("bad", [[1, -1], [65536]])
def test_write_shard_rejects_ids_outside_uint16(tmp_path, bad):
    with pytest.raises(ShardError, match="does not fit in uint16"):
        write_shard(tmp_path / "s.bin", bad)
    assert list(tmp_path.iterdir()) == []  # no shard and no temp file left behind


def test_atomic_writer_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError), atomic_writer(target) as f:
        f.write(b"partial")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def corrupt(path: Path, offset: int, data: bytes) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset:offset + len(data)] = data
    path.write_bytes(bytes(raw))


@pytest.fixture
def shard(tmp_path) -> Path:
    path = tmp_path / "fineweb_val_000000.bin"
    write_shard(path, [1, 2, 3, 1000, 5])
    return path


def test_missing_shard(tmp_path):
    with pytest.raises(ShardError, match="nope.bin: shard file not found"):
        read_shard(tmp_path / "nope.bin")


def test_short_file(shard):
    shard.write_bytes(b"\0" * 100)
    with pytest.raises(ShardError, match="100 bytes, shorter than the 1024-byte shard header"):
        shard_token_count(shard)


def test_bad_magic_shows_value(shard):
    corrupt(shard, 0, struct.pack("<i", 12345))
    with pytest.raises(ShardError, match="bad magic 12345 .expected 20240520"):
        read_shard(shard)


def test_bad_version(shard):
    corrupt(shard, 4, struct.pack("<i", 7))
    with pytest.raises(ShardError, match="unsupported shard version 7"):
        read_shard(shard)


def test_truncated_body(shard):
    shard.write_bytes(shard.read_bytes()[:-3])
    with pytest.raises(ShardError, match=r"truncated: header says 5 tokens \(1034 bytes\) but the file has 1031"):
        read_shard(shard)


def test_count_mismatch(shard):
    corrupt(shard, 8, struct.pack("<i", 4))  # header claims fewer tokens than the body holds
    with pytest.raises(ShardError, match=r"mismatch: header says 4 tokens \(1032 bytes\) but the file has 1034"):
        shard_token_count(shard)


def test_token_outside_vocab(shard):
    assert read_shard(shard, vocab_size=1001).tolist() == [1, 2, 3, 1000, 5]
    with pytest.raises(ShardError, match="token id 1000 at position 3 is outside the vocabulary .vocab_size 1000"):
        read_shard(shard, vocab_size=1000)
    assert issubclass(ShardError, GolfError)


def test_find_shards_directory_and_glob(tmp_path):
    val, _ = make_shards(tmp_path, "val", [3])
    train, _ = make_shards(tmp_path, "train", [3, 3, 3])
    assert find_shards(tmp_path, "train") == train
    assert find_shards(str(tmp_path), "val") == val
    assert find_shards(str(tmp_path / "fineweb_train_00000[02].bin"), "train") == [train[0], train[2]]
    with pytest.raises(GolfError, match=r"no fineweb_test_\*.bin shards in"):
        find_shards(tmp_path, "test")
    with pytest.raises(GolfError, match=r"no files matching .*x_\*.bin"):
        find_shards(str(tmp_path / "x_*.bin"), "val")


# --- training stream and loader -------------------------------------------------------------

def test_token_stream_wraps_across_shards(tmp_path):
    files, all_tokens = make_shards(tmp_path, "train", [10, 0, 5, 15])  # an empty shard is skipped
    stream = TokenStream(files)
    got = torch.cat([stream.take(n) for n in (7, 20, 1, 30, 0, 12)])
    assert got.dtype == torch.int64
    assert np.array_equal(got.numpy(), np.tile(all_tokens, 3)[:70])


def test_token_stream_all_empty_is_an_error(tmp_path):
    files, _ = make_shards(tmp_path, "train", [0, 0])
    with pytest.raises(GolfError, match="all 2 shards are empty"):
        TokenStream(files)


def test_token_stream_checks_vocab(tmp_path):
    files, _ = make_shards(tmp_path, "train", [10, 10])
    stream = TokenStream(files, vocab_size=15)
    stream.take(10)
    with pytest.raises(ShardError, match="token id 15 at position 5"):
        stream.take(1)


@pytest.mark.parametrize("world_size,grad_accum", [(1, 1), (2, 1), (3, 1), (2, 4), (3, 2)])
def test_loader_matches_official_chunking(tmp_path, world_size, grad_accum):
    seq_len, local = 8, 16
    global_tokens = local * world_size * grad_accum + (world_size * grad_accum - 1)  # floor division
    files, _ = make_shards(tmp_path, "train", [97, 50, 130])
    loaders = [DistributedTokenLoader(files, r, world_size) for r in range(world_size)]
    reference = TokenStream(files)  # what a single reader of the same shards sees
    span = local + 1
    for _ in range(12):  # enough batches to wrap around the 277 tokens several times
        chunk = reference.take(span * world_size)
        seen = []
        for rank, loader in enumerate(loaders):
            w = loader.next_batch(global_tokens, seq_len, grad_accum)
            assert w.shape == (local // seq_len, seq_len + 1) and w.dtype == torch.int64
            mine = chunk[rank * span:(rank + 1) * span]
            # The official x/y: span[:-1] and span[1:] reshaped to (-1, seq_len).
            assert torch.equal(w[:, :-1], mine[:-1].reshape(-1, seq_len))
            assert torch.equal(w[:, 1:], mine[1:].reshape(-1, seq_len))
            seen.append(torch.cat([w[:, :-1].reshape(-1), w[-1:, -1]]))
        assert torch.equal(torch.cat(seen), chunk)  # the ranks' spans tile the chunk in rank order
        if world_size > 1 and len(set(chunk.tolist())) == len(chunk):  # no wrap inside this chunk
            assert all(not set(seen[a].tolist()) & set(seen[b].tolist())
                       for a in range(world_size) for b in range(a + 1, world_size))


def test_loader_is_deterministic(tmp_path):
    files, _ = make_shards(tmp_path, "train", [100, 100])
    a, b = (DistributedTokenLoader(files, 1, 2) for _ in range(2))
    for _ in range(5):
        assert torch.equal(a.next_batch(64, 16, 1), b.next_batch(64, 16, 1))


@pytest.mark.parametrize("global_tokens,seq_len", [(100, 16), (1, 16)])
def test_loader_rejects_batch_not_multiple_of_seq_len(tmp_path, global_tokens, seq_len):
    files, _ = make_shards(tmp_path, "train", [100])
    with pytest.raises(GolfError, match="must be a positive multiple of seq_len 16"):
        DistributedTokenLoader(files, 0, 2).next_batch(global_tokens, seq_len, 1)


# --- validation -----------------------------------------------------------------------------

def test_val_tokens_truncate_to_whole_windows(tmp_path):
    files, all_tokens = make_shards(tmp_path, "val", [60, 40])
    tokens = load_val_tokens(files, seq_len=16)
    assert tokens.dtype == torch.int64
    assert np.array_equal(tokens.numpy(), all_tokens[:97])  # floor(99 / 16) * 16 + 1
    assert np.array_equal(load_val_tokens(files, 16, max_tokens=50).numpy(), all_tokens[:49])
    assert load_val_tokens(files, 16, max_tokens=17).numel() == 17
    with pytest.raises(GolfError, match="has 16 tokens, fewer than seq_len \\+ 1 = 17"):
        load_val_tokens(files, 16, max_tokens=16)
    with pytest.raises(ShardError, match="outside the vocabulary"):
        load_val_tokens(files, 16, vocab_size=50)


def test_val_windows_are_non_overlapping_targets():
    tokens = torch.arange(100)
    w = val_windows(tokens, 16)
    assert w.shape == (6, 17)
    for i in range(6):
        assert torch.equal(w[i], tokens[i * 16:i * 16 + 17])
    assert torch.equal(w[:, 1:].reshape(-1), tokens[1:97])  # every target scored exactly once


def test_rank_slice_splits_contiguously_first_ranks_bigger():
    assert [rank_slice(10, r, 3) for r in range(3)] == [range(0, 4), range(4, 7), range(7, 10)]
    for n in range(0, 30):
        for ws in range(1, 9):
            parts = [rank_slice(n, r, ws) for r in range(ws)]
            assert [i for p in parts for i in p] == list(range(n))
            sizes = [len(p) for p in parts]
            assert sizes == sorted(sizes, reverse=True) and sizes[0] - sizes[-1] <= 1


# --- golf data info -------------------------------------------------------------------------

def test_cli_info_lists_and_validates(tmp_path, capsys):
    make_shards(tmp_path, "val", [10])
    train, _ = make_shards(tmp_path, "train", [20, 30], start=10)
    assert run_cli(["data", "info", str(tmp_path), "--vocab-size", "60", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [Path(s["path"]).name for s in out["shards"]] == [
        "fineweb_val_000000.bin", "fineweb_train_000000.bin", "fineweb_train_000001.bin"]
    assert out["tokens"] == {"val": 10, "train": 50} and out["ok"] is True

    assert run_cli(["data", "info", str(tmp_path), "--vocab-size", "40"]) == 1  # ids up to 59
    text = capsys.readouterr().out
    assert "BAD" in text and "token id 40 at position 10" in text

    train[0].write_bytes(train[0].read_bytes()[:-2])
    assert run_cli(["data", "info", str(tmp_path / "fineweb_train_*.bin")]) == 1
    assert "truncated" in capsys.readouterr().out


def test_cli_data_without_subcommand_prints_help(capsys):
    assert run_cli(["data"]) == 2
    assert "build" in capsys.readouterr().err
