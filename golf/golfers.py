"""Compressors drafted as language models ("golfers"): zlib, zstd, lzma and brotli.

A lossless compressor is a code, and a code is a language model: a text compressed to L bits has
probability 2^-L. So each golfer gets a bpb on the same bytes a model's bpb divides by (the val
tokens' credited bytes, golf.textbytes; documents separated by a newline that costs bits but is
credited 0 bytes, like BOS):

- cold:   bpb = 8·|C(val)| / bytes. The compressor starts from nothing and learns English as it
          reads the val text (headers and checksums included).
- primed: bpb = 8·(|C(prime ‖ val)| − |C(prime)|) / bytes, prime = the first `prime_bytes` bytes of
          the train split's text: the conditional code length given train text it may have seen
          (a model is primed by training; zlib can only look back 32 KiB).

Both are exact code lengths of decodable streams, so they are labelled `exact`. The compressors
are the artifact's own (quant: zlib-9, zstd-22, lzma preset 9e raw, brotli-11 when installed).

Sampling works by compressed length, as a compressor has no next-token distribution of its own:
each step, every candidate continuation c (the most frequent tokenizer pieces in the prime text)
costs ΔL(c) = 8·|C(context ‖ c)| bits, and c is drawn with probability ∝ 2^(−ΔL(c)/temperature)
(the shared sampling rule: temperature, top-k, a seeded generator). Lengths come in whole bytes,
so many candidates tie: the text is as poor as one expects of gzip.

Per-byte bits (for colour maps): byte i of a document costs 8·(|C(doc[:i+1])| − |C(doc[:i])|),
the document compressed alone from nothing; these telescope to its compressed size (less the
empty stream's header) and come in multiples of 8, sometimes negative.
"""

from __future__ import annotations

import lzma
import math
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from golf.bpb import load_tokenizer
from golf.data import find_shards, load_val_tokens, read_shard
from golf.errors import GolfError
from golf.models.sampling import sample_next
from golf.textbytes import DOC_SEPARATOR, CreditedBytes
from quant import compress, compressor_names

DEFAULT_PRIME_BYTES = 1 << 18  # 256 KiB of train text
CANDIDATES = 128  # continuations scored per sampling step
CONTEXT_BYTES = 512  # context a sampling step compresses (prime tail + prompt + text so far)


def golfer_names() -> list[str]:
    """Every registered artifact compressor but `none` (brotli-11 only when brotli is installed)."""
    return [name for name in compressor_names() if name != "none"]


def _check(name: str) -> str:
    if name not in golfer_names():
        raise GolfError(f"unknown golfer {name!r} (known: {', '.join(golfer_names())})")
    return name


def val_text(data: Path, tokenizer: Path, *, seq_len: int = 1024, max_tokens: int | None = None) -> tuple[bytes, int, int]:
    """(compressor text, credited bytes, targets) of the val tokens `golf score` scores with the same
    seq_len and max_tokens (whole windows only)."""
    sp = load_tokenizer(tokenizer)
    tokens = load_val_tokens(find_shards(data, "val"), seq_len, max_tokens=max_tokens, vocab_size=sp.vocab_size())
    text, credited = CreditedBytes(sp).compressor_text(tokens)
    return text, credited, tokens.numel() - 1


def train_text(data: Path, tokenizer: Path, n_bytes: int) -> tuple[bytes, list[bytes]]:
    """(the first `n_bytes` of the train split's text, its CANDIDATES most frequent pieces as bytes)."""
    sp = load_tokenizer(tokenizer)
    chunks, have = [], 0
    for shard in find_shards(data, "train"):  # n_bytes + 1 tokens hold at least n_bytes bytes, BOS aside
        chunks.append(read_shard(shard, sp.vocab_size())[: n_bytes + 1 - have])
        have += len(chunks[-1])
        if have > n_bytes:
            break
    tokens = np.concatenate(chunks).astype(np.int64)
    rule = CreditedBytes(sp)
    text, _ = rule.compressor_text(tokens)
    common = [piece for piece, _ in Counter(rule.targets(tokens)).most_common() if piece][:CANDIDATES]
    return text[:n_bytes], common


def code_length_bits(name: str, text: bytes, prime: bytes = b"") -> int:
    """Bits of `text` under golfer `name`, conditional on `prime` (see the module docstring)."""
    if not prime:
        return 8 * len(compress(name, text))
    joined = prime + DOC_SEPARATOR + text
    return 8 * (len(compress(name, joined)) - len(compress(name, prime)))


def score_golfers(data: Path, tokenizer: Path, *, seq_len: int = 1024, max_tokens: int | None = None,
                  prime_bytes: int = DEFAULT_PRIME_BYTES, names: list[str] | None = None,
                  progress: bool = False) -> dict[str, Any]:
    """Cold and primed bpb of each golfer on the val text; the `golf golfers --json` object."""
    names = [_check(n) for n in (names or golfer_names())]
    if seq_len < 1 or prime_bytes < 0:
        raise GolfError(f"seq_len must be >= 1 and prime_bytes >= 0, got {seq_len} and {prime_bytes}")
    text, credited, targets = val_text(data, tokenizer, seq_len=seq_len, max_tokens=max_tokens)
    prime, _ = train_text(data, tokenizer, prime_bytes) if prime_bytes > 0 else (b"", [])
    rows = []
    for name in tqdm(names, desc="golfers", disable=not progress or None, leave=False):
        row: dict[str, Any] = {"name": name, "label": "exact"}
        cold = code_length_bits(name, text)
        row["cold"] = {"bits": cold, "bpb": cold / credited}
        if prime:
            primed = code_length_bits(name, text, prime)
            row["primed"] = {"bits": primed, "bpb": primed / credited}
        rows.append(row)
    return {"command": "golfers", "data": str(data), "tokenizer": str(tokenizer), "seq_len": seq_len,
            "max_tokens": max_tokens, "targets": targets, "bytes": credited, "text_bytes": len(text),
            "prime_bytes": len(prime),
            "rule": "bpb = compressed bits / credited bytes of the val targets (golf score's bytes); documents "
                    "joined by a newline that is compressed but credited 0 bytes, like BOS; cold = the val text "
                    f"alone, primed = 8*(|C(prime+val)| - |C(prime)|), prime = the first {len(prime)} bytes of the "
                    "train split's text",
            "golfers": rows}


# ----------------------------------------------------------------------------- per-byte bits


def _prefix_compressor(name: str, size: int) -> Callable[[bytes], bytes]:
    """`compress(name, ·)` for inputs up to `size` bytes, made cheap where the output stays the same:
    lzma's preset-9 dictionary (64 MiB, allocated per call) shrunk to fit the input changes no
    byte (no match reaches further back than the input); `golfer_byte_bits` checks the result."""
    if name == "lzma" and size <= 1 << 20:
        filters = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME, "dict_size": max(4096, size)}]
        return lambda data: lzma.compress(data, format=lzma.FORMAT_RAW, filters=filters)
    return lambda data: compress(name, data)


def golfer_byte_bits(name: str, doc: bytes) -> list[float]:
    """Bits each byte of `doc` adds to its compressed size, the document compressed alone."""
    fn = _prefix_compressor(_check(name), len(doc))
    sizes = [len(fn(doc[:i])) for i in range(len(doc) + 1)]
    if sizes[-1] != len(compress(name, doc)):
        raise AssertionError(f"{name}: the fast prefix compressor disagrees with the artifact's")
    return [8.0 * (b - a) for a, b in zip(sizes[:-1], sizes[1:])]


# ----------------------------------------------------------------------------- sampling


def golfer_generate(name: str, context: bytes, candidates: list[bytes], steps: int, *, temperature: float = 1.0,
                    top_k: int | None = None, seed: int = 0) -> bytes:
    """Continue `context` by `steps` candidates drawn by compressed length (module docstring)."""
    _check(name)
    if not candidates:
        raise GolfError("no candidate continuations to sample from")
    generator = torch.Generator().manual_seed(seed)
    fn = _prefix_compressor(name, CONTEXT_BYTES + max(len(c) for c in candidates))
    out = b""
    for _ in range(steps):
        window = (context + out)[-CONTEXT_BYTES:]
        bits = torch.tensor([8.0 * len(fn(window + c)) for c in candidates], dtype=torch.float64)
        # p ∝ 2^-bits, as logits in nats: −bits·ln 2.
        logits = (-(bits - bits.min()) * math.log(2)).float()[None]
        out += candidates[int(sample_next(logits, temperature, top_k, generator)[0, 0])]
    return out


def golfer_samples(data: Path, tokenizer: Path, prompt: str, steps: int, *, prime_bytes: int = DEFAULT_PRIME_BYTES,
                   temperature: float = 1.0, top_k: int | None = None, seed: int = 0,
                   names: list[str] | None = None) -> list[dict[str, Any]]:
    """One continuation of `prompt` per golfer, its context the tail of the prime text + a new document."""
    prime, candidates = train_text(data, tokenizer, max(prime_bytes, CONTEXT_BYTES))
    context = prime[-CONTEXT_BYTES:] + DOC_SEPARATOR + prompt.encode("utf-8")
    return [{"name": name, "prompt": prompt, "steps": steps, "temperature": temperature, "top_k": top_k, "seed": seed,
             "completion": golfer_generate(name, context, candidates, steps, temperature=temperature, top_k=top_k,
                                           seed=seed).decode("utf-8", errors="replace")}
            for name in (names or golfer_names())]
