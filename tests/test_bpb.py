"""The byte rule, checked by hand on the real sp1024 tokenizer and against the 200 embedded docs."""

from __future__ import annotations

import hashlib
import io
import json
import math
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm
import torch

from golf import bpb, embedded
from golf.data import read_shard
from golf.errors import GolfError
from golf.spm_model import read_spec
from golf.tokenizers import classify_tokenizer, normalized_texts

BOS, EOS, PAD, UNK = 1, 2, 0, 3


@pytest.fixture(scope="module")
def sp() -> spm.SentencePieceProcessor:
    return bpb.load_tokenizer(embedded.tokenizer_path())


@pytest.fixture(scope="module")
def table(sp) -> bpb.ByteTable:
    return bpb.build_byte_table(sp)


@pytest.fixture(scope="module")
def docs() -> list[str]:
    return [json.loads(line)["text"] for line in embedded.docs_path().read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def val_stream() -> torch.Tensor:
    return torch.from_numpy(read_shard(embedded.shards_dir() / "fineweb_val_000000.bin").astype(np.int64))


def ids(sp, *pieces: str) -> torch.Tensor:
    out = []
    for piece in pieces:
        i = sp.piece_to_id(piece)
        assert piece == "<unk>" or i != sp.unk_id(), f"{piece!r} is not a piece of this tokenizer"
        out.append(i)
    return torch.tensor(out)


def credited(table, stream: torch.Tensor) -> list[int]:
    return bpb.target_bytes(table, stream[:-1], stream[1:]).tolist()


# (a) The rule by hand. Expected numbers come from the piece strings, not from the code under test.

def test_special_ids_and_table_shape(sp, table):
    assert (sp.pad_id(), sp.bos_id(), sp.eos_id(), sp.unk_id()) == (PAD, BOS, EOS, UNK)
    assert table.vocab_size == 1024
    assert table.base_bytes[[PAD, BOS, EOS, UNK]].tolist() == [0, 0, 0, 0]
    assert table.is_boundary[[PAD, BOS, EOS, UNK]].all()
    assert not table.is_boundary[4:].any()  # byte pieces and normal pieces
    assert table.base_bytes[4:260].eq(1).all()  # the 256 <0xNN> byte-fallback pieces


def test_hello_world_after_bos(sp, table):
    # "H" "ell" "o" "▁wor" "ld" ".": the only space is the one in "▁wor" (3 letters + 1 space).
    stream = ids(sp, "<s>", "H", "ell", "o", "▁wor", "ld", ".")
    assert credited(table, stream) == [1, 3, 1, 4, 2, 1]
    assert sum(credited(table, stream)) == len("Hello world.")


def test_leading_space_dropped_only_after_a_boundary(sp, table):
    # "▁the" is "the" plus a space; right after a boundary (BOS, EOS, PAD, UNK) the space isn't text.
    for boundary in ("<s>", "</s>", "<pad>", "<unk>"):
        assert credited(table, ids(sp, boundary, "▁the")) == [3]
    assert credited(table, ids(sp, ".", "▁the")) == [4]
    assert credited(table, ids(sp, "<0xA9>", "▁the")) == [4]  # a byte piece is not a boundary
    # The lone "▁" piece: an empty string plus one space.
    assert credited(table, ids(sp, "<s>", "▁")) == [0]
    assert credited(table, ids(sp, "ld", "▁")) == [1]


def test_byte_fallback_counts_one_per_piece(sp, table):
    # 日 (U+65E5) is not in the vocabulary: it is encoded as its three UTF-8 bytes E6 97 A5.
    assert sp.encode("日", out_type=str) == ["<0xE6>", "<0x97>", "<0xA5>"]
    stream = ids(sp, "<s>", "<0xE6>", "<0x97>", "<0xA5>", "▁the")
    assert credited(table, stream) == [1, 1, 1, 4]
    assert sum(credited(table, stream)) == len("日 the".encode("utf-8"))
    # é is two pieces, 2 bytes: "Café" is 5 bytes in UTF-8.
    assert sp.encode("Café", out_type=str) == ["C", "a", "f", "<0xC3>", "<0xA9>"]
    assert sum(credited(table, torch.tensor([BOS] + sp.encode("Café")))) == 5


def test_control_targets_count_zero(sp, table):
    stream = ids(sp, "o", "<s>", "▁wor", "</s>", "<pad>", "<unk>", "H")
    assert credited(table, stream) == [0, 3, 0, 0, 0, 1]


def test_window_bytes_and_padded_vocab(sp):
    table = bpb.build_byte_table(sp, vocab_size=1100)
    assert table.vocab_size == 1100
    assert table.base_bytes[1024:].eq(0).all() and table.is_boundary[1024:].all()
    windows = torch.stack([ids(sp, "<s>", "H", "ell", "o", "▁wor"), ids(sp, "ld", "▁the", "<s>", "▁the", "▁")])
    out = bpb.window_bytes(table.to("cpu"), windows.to(torch.int32))
    assert out.dtype == torch.int64
    assert out.tolist() == [[1, 3, 1, 4], [4, 0, 3, 1]]


# (b) The rule against the text of all 200 embedded documents.

def test_all_docs_rule_equals_normalized_text_and_decode(sp, table, docs):
    assert len(docs) == 200
    encoded = sp.encode(docs)
    normalized = normalized_texts(sp, read_spec(sp), docs)
    totals = [0, 0]
    for i, (text, enc) in enumerate(zip(normalized, encoded)):
        stream = torch.tensor([BOS] + enc)
        rule = int(bpb.target_bytes(table, stream[:-1], stream[1:]).sum())
        decoded = sp.decode(enc)
        assert decoded == text, f"doc {i} does not round-trip"
        assert rule == len(text.encode()), f"doc {i}: rule {rule}, decoded {len(text.encode())}"
        totals[i >= 50] += rule
    assert totals == [351_287, 1_138_131]  # PROVENANCE.md: val docs 0-49, train docs 50-199


def test_challenge_tokenizer_exact_table_is_the_official_rule(sp, table):
    # golf scores with the exact table; for sp1024 it is build_sentencepiece_luts entry for entry.
    official = bpb.build_byte_table(sp, rule="official")
    assert bpb.same_table(table, official)
    assert table.base_bytes.tolist() == official.base_bytes.tolist()
    assert classify_tokenizer(sp).rule == "official"
    with pytest.raises(GolfError, match="byte rule must be one of exact, official"):
        bpb.build_byte_table(sp, rule="utf8")


def test_normalized_texts_follow_nmt_nfkc(sp):
    # Ends stripped, whitespace runs (newlines, tabs, a literal "▁") collapse to one space; NFKC folds "ﬁ".
    assert normalized_texts(sp, read_spec(sp), ["  Hello\n\nworld\t x ▁ é ﬁ "]) == ["Hello world x é fi"]


def test_audit_passes_on_embedded_val_shard(sp, table, val_stream):
    report = bpb.audit_bytes(val_stream, sp, table, stream_complete=True)
    assert report.ok and report.mismatches == []
    assert (report.docs_checked, report.docs_failed, report.partial) == (50, 0, 0)
    assert report.targets == 148_342  # 148,343 tokens; the first is context only
    assert report.table_bytes == report.table_bytes_checked == report.text_bytes_checked == 351_287
    assert report.implied_bytes_per_token == pytest.approx(351_287 / 148_342)
    json.dumps(asdict(report))  # golf score --json prints it


def test_audit_skips_documents_cut_by_the_stream(sp, table, val_stream):
    bos = torch.nonzero(val_stream == BOS).flatten().tolist()
    capped = bpb.audit_bytes(val_stream[: bos[5] + 100], sp, table)  # a val cap cuts doc 5
    assert (capped.docs_checked, capped.partial, capped.ok) == (5, 1, True)
    middle = val_stream[bos[3] + 5: bos[10] + 5]  # starts inside doc 3, ends inside doc 10
    report = bpb.audit_bytes(middle.numpy(), sp, table)
    assert (report.docs_checked, report.partial, report.ok) == (6, 2, True)
    nothing = bpb.audit_bytes(val_stream[bos[3] + 5: bos[4]], sp, table)
    assert (nothing.docs_checked, nothing.partial, nothing.ok) == (0, 1, False)  # nothing checked is no pass


def test_audit_is_fast(sp, table):
    import time

    stream = torch.from_numpy(read_shard(embedded.shards_dir() / "fineweb_train_000000.bin").astype(np.int64))
    start = time.perf_counter()
    assert bpb.audit_bytes(stream, sp, table, stream_complete=True).docs_checked == 150
    assert time.perf_counter() - start < 2.0  # 480k tokens; ~0.15 s on 2 CPU cores


# (c) The audit catches a wrong table.

@pytest.mark.parametrize("wrong", ["space_everywhere", "bytes_count_3", "bos_counts_1"])
def test_audit_catches_wrong_table(sp, table, val_stream, wrong):
    if wrong == "space_everywhere":
        bad = replace(table, has_leading_space=torch.ones_like(table.has_leading_space))
    elif wrong == "bytes_count_3":
        base = table.base_bytes.clone()
        base[4:260] = 3
        bad = replace(table, base_bytes=base)
    else:  # a BOS target's credit is checked with the document it closes
        base = table.base_bytes.clone()
        base[BOS] = 1
        bad = replace(table, base_bytes=base)
    report = bpb.audit_bytes(val_stream, sp, bad, stream_complete=True)
    assert not report.ok and report.docs_failed > 0
    first = report.mismatches[0]
    assert first.table_bytes > first.text_bytes
    assert len(report.mismatches) <= 5


# (d) A tokenizer without a standalone "▁" is refused.

def test_check_tokenizer_rejects_missing_space_piece(tmp_path):
    # Trained on text with no whitespace at all, so "▁" never becomes a piece.
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(["abcabcabdabdab", "bcdbcdbcdaabb", "ddccbbaa"] * 20), model_writer=model,
        model_type="bpe", vocab_size=270, byte_fallback=True, add_dummy_prefix=False, hard_vocab_limit=False,
        character_coverage=1.0, pad_id=0, bos_id=1, eos_id=2, unk_id=3, minloglevel=2)
    path = tmp_path / "nospace.model"
    path.write_bytes(model.getvalue())
    sp = bpb.load_tokenizer(path)
    with pytest.raises(GolfError, match="▁"):
        bpb.check_tokenizer(sp)
    with pytest.raises(GolfError, match="▁"):
        bpb.build_byte_table(sp)
    # Why it matters: the space becomes <0xE2><0x96><0x81>, 3 bytes by the rule for 1 byte of text.
    # sp.decode gives those bytes back as a literal "▁" (7 bytes): the audit reads it as the one
    # space it stands for (5 bytes, the input's length), which exposes the inflation.
    table = bpb.build_byte_table(sp, check=False)
    enc = sp.encode("ab cd")
    assert sp.encode("ab cd", out_type=str)[1:4] == ["<0xE2>", "<0x96>", "<0x81>"]
    assert len(sp.decode(enc).encode("utf-8")) == 7 and normalized_texts(sp, read_spec(sp), ["ab cd"]) == ["ab cd"]
    report = bpb.audit_bytes(torch.tensor([BOS] + enc + [BOS]), sp, table)
    assert not report.ok and (report.mismatches[0].table_bytes, report.mismatches[0].text_bytes) == (7, 5)


def test_check_tokenizer_accepts_challenge_tokenizer(sp):
    bpb.check_tokenizer(sp)
    assert sp.piece_to_id("▁") == 939


def test_load_tokenizer_errors(tmp_path):
    with pytest.raises(GolfError, match="not found"):
        bpb.load_tokenizer(tmp_path / "missing.model")
    garbage = tmp_path / "garbage.model"
    garbage.write_bytes(b"not a model")
    with pytest.raises(GolfError, match="not a valid SentencePiece model"):
        bpb.load_tokenizer(garbage)


# (e) Arithmetic and labels.

def test_bits_per_byte():
    assert bpb.bits_per_byte(10 * math.log(2), 5) == pytest.approx(2.0)
    # The official NaiveBaseline: val_loss 2.07269931 nats/token at 0.4095 tokens/byte gives ~1.2244 bpb.
    assert bpb.bits_per_byte(2.07269931 * 409_500, 1_000_000) == pytest.approx(1.2245, abs=1e-3)
    for n_bytes in (0, -3):
        with pytest.raises(GolfError):
            bpb.bits_per_byte(1.0, n_bytes)


def test_labels():
    assert bpb.LABELS == ("exact", "bound")
    assert bpb.check_label("bound") == "bound"
    with pytest.raises(GolfError):
        bpb.check_label("approx")


# (f) The embedded files are the ones PROVENANCE.md lists.

def test_embedded_sha256s_match():
    assert embedded.EMBEDDED_TOKENIZER_SHA256 == "4f5e8adb109c66b4886963bc75a7befd73bda36d27fd7102df8e9e66503b0e2a"
    assert embedded.file_sha256(embedded.tokenizer_path()) == embedded.EMBEDDED_TOKENIZER_SHA256
    assert len(embedded.EMBEDDED_FILES) == 5
    for relative, sha in embedded.EMBEDDED_FILES.items():
        assert embedded.file_sha256(embedded.ASSETS_DIR / relative) == sha, relative
    readme = (embedded.ASSETS_DIR / "README.md").read_text(encoding="utf-8")
    assert all(sha in readme for sha in embedded.EMBEDDED_FILES.values())


def test_embedded_accessors(monkeypatch, tmp_path):
    assert embedded.docs_path().name == "fineweb_challenge_docs_200.jsonl"
    assert sorted(p.name for p in embedded.shards_dir().glob("*.bin")) == [
        "fineweb_train_000000.bin", "fineweb_val_000000.bin"]
    monkeypatch.setattr(embedded, "ASSETS_DIR", tmp_path)  # a broken install
    for accessor in (embedded.tokenizer_path, embedded.docs_path, embedded.shards_dir):
        with pytest.raises(GolfError, match="reinstall"):
            accessor()
    with pytest.raises(GolfError, match="cannot read"):
        embedded.file_sha256(tmp_path / "nope")


def test_file_sha256_streams_in_chunks(tmp_path: Path):
    data = np.random.default_rng(0).bytes(3 * (1 << 20) + 17)  # crosses several 1 MiB reads
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert embedded.file_sha256(path) == hashlib.sha256(data).hexdigest()
