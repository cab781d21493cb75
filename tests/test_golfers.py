"""Compressors as language models: their bpb is their code length over the bytes golf score counts."""

from __future__ import annotations

import json
import random

import pytest

import quant
from conftest import run_cli
from golf import embedded
from golf.bpb import build_byte_table, load_tokenizer, window_bytes
from golf.data import find_shards, load_val_tokens
from golf.errors import GolfError
from golf.golfers import (CANDIDATES, _prefix_compressor, golfer_byte_bits, golfer_generate, golfer_names,
                          score_golfers, train_text, val_text)
from golf.textbytes import DOC_SEPARATOR, CreditedBytes

DATA, TOKENIZER = embedded.shards_dir(), embedded.tokenizer_path()


def test_credited_bytes_are_the_bytes_the_score_divides_by():
    sp = load_tokenizer(TOKENIZER)
    tokens = load_val_tokens(find_shards(DATA, "val"), 256)
    text, credited = CreditedBytes(sp).compressor_text(tokens)
    assert credited == int(window_bytes(build_byte_table(sp), tokens[None]).sum())
    documents = int((tokens[1:] == sp.bos_id()).sum())
    assert len(text) == credited + documents * len(DOC_SEPARATOR) and documents > 10
    # Each whole document's bytes decode to the document's normalized text.
    first = text.split(DOC_SEPARATOR)[1].decode("utf-8")
    starts = (tokens == sp.bos_id()).nonzero().flatten().tolist()
    assert first == sp.decode(tokens[starts[1] + 1:starts[2]].tolist())


def test_cold_and_primed_bpb_are_compressed_lengths_over_credited_bytes(capsys):
    assert run_cli(["golfers", "--seq-len", "128", "--max-tokens", "6000", "--prime-bytes", "5000", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    text, credited, targets = val_text(DATA, TOKENIZER, seq_len=128, max_tokens=6000)
    prime, _ = train_text(DATA, TOKENIZER, 5000)
    assert (report["bytes"], report["targets"], report["prime_bytes"]) == (credited, targets, len(prime))
    assert len(prime) == 5000
    assert [row["name"] for row in report["golfers"]] == golfer_names()
    for row in report["golfers"]:
        cold = 8 * len(quant.compress(row["name"], text))
        primed = 8 * (len(quant.compress(row["name"], prime + DOC_SEPARATOR + text))
                      - len(quant.compress(row["name"], prime)))
        assert row["cold"] == {"bits": cold, "bpb": cold / credited} and row["label"] == "exact"
        assert row["primed"] == {"bits": primed, "bpb": primed / credited}
        assert 1.0 < row["primed"]["bpb"] < 8.0
    assert "primed" not in score_golfers(DATA, TOKENIZER, max_tokens=3000, prime_bytes=0, names=["zlib-9"])["golfers"][0]


def test_the_shrunk_lzma_dictionary_changes_no_byte():
    rng = random.Random(0)
    text, _, _ = val_text(DATA, TOKENIZER, max_tokens=3000)
    fast = _prefix_compressor("lzma", 2000)
    for _ in range(25):
        start = rng.randrange(len(text) - 2000)
        piece = text[start:start + rng.randrange(2000)]
        assert fast(piece) == quant.compress("lzma", piece)


@pytest.mark.parametrize("name", golfer_names())
def test_per_byte_bits_telescope_to_the_compressed_size(name):
    doc = "The council met on Tuesday. The council met again on Wednesday, and the council agreed.".encode()
    bits = golfer_byte_bits(name, doc)
    assert len(bits) == len(doc) and all(b % 8 == 0 for b in bits)
    assert sum(bits) == 8 * (len(quant.compress(name, doc)) - len(quant.compress(name, b"")))


def test_sampling_by_compressed_length_is_seeded_and_draws_candidates():
    prime, candidates = train_text(DATA, TOKENIZER, 20_000)
    assert len(candidates) == CANDIDATES and b" the" in candidates
    context = prime[-400:] + DOC_SEPARATOR + b"The"
    a = golfer_generate("zlib-9", context, candidates, 6, seed=1)
    assert a == golfer_generate("zlib-9", context, candidates, 6, seed=1)
    assert a != golfer_generate("zlib-9", context, candidates, 6, temperature=50.0, seed=2)
    # Greedy takes a candidate of least compressed length at every step.
    greedy = golfer_generate("zstd-22", context, [b"zq", b" the", b"xj"], 1, temperature=0)
    costs = {c: len(quant.compress("zstd-22", context[-512:] + c)) for c in (b"zq", b" the", b"xj")}
    assert costs[greedy] == min(costs.values())


def test_bad_golfer_arguments_are_clear_errors():
    with pytest.raises(GolfError, match="unknown golfer 'gzip'"):
        score_golfers(DATA, TOKENIZER, names=["gzip"])
    with pytest.raises(GolfError, match="seq_len must be >= 1"):
        score_golfers(DATA, TOKENIZER, seq_len=0)
