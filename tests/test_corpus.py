"""Documents to shards (byte-identical to the official export) and tokenizer training."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm

from golf.corpus import CorpusAudit, build_shards, iter_documents, train_tokenizer
from golf.data import read_shard
from conftest import run_cli
from golf.errors import GolfError
from golf.tokenizers import classify_tokenizer

REPO = Path(__file__).resolve().parents[1]
SHARED = Path("/work/shared/data")


def real_file(name: str, fallback: Path) -> Path:
    """A file shipped in golf/assets (any subfolder), else the shared copy it was made from."""
    found = sorted((REPO / "golf" / "assets").rglob(name))
    return found[0] if found else fallback


TOKENIZER = real_file("fineweb_1024_bpe.model", SHARED / "tokenizers" / "fineweb_1024_bpe.model")
DOCS = real_file("fineweb_challenge_docs_200.jsonl", SHARED / "fineweb" / "fineweb_challenge_docs_200.jsonl")
SAMPLE_SHARDS = {name: real_file(name, SHARED / "derived" / "fineweb10B_sp1024_sample" / name)
                 for name in ("fineweb_val_000000.bin", "fineweb_train_000000.bin")}


def write_jsonl(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    return path



# --- documents ------------------------------------------------------------------------------

def test_iter_documents_jsonl_txt_and_folders(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    write_jsonl(folder / "b.jsonl", ["second", "third\x00with NUL"])
    (folder / "b.jsonl").write_text((folder / "b.jsonl").read_text() + "\n  \n", encoding="utf-8")  # blank lines
    (folder / "a.txt").write_text("first\nstill first\n", encoding="utf-8")
    (folder / "notes.md").write_text("ignored", encoding="utf-8")
    single = write_jsonl(tmp_path / "one.jsonl", ["last"])
    docs = list(iter_documents([folder, str(single)]))
    # Text is kept exactly as stored (NUL included): the official exporter encodes it unchanged.
    assert docs == ["first\nstill first\n", "second", "third\x00with NUL", "last"]
    assert list(iter_documents(single)) == ["last"]


@pytest.mark.parametrize("line,message", [
    ('{"text": "ok"}\n{"text": bro', r"bad\.jsonl:2: bad JSON"),
    ('{"txt": "x"}', r'bad\.jsonl:1: expected an object with a string "text" field'),
    ('{"text": 5}', r'bad\.jsonl:1: expected an object with a string "text" field'),
    ('["text"]', r'bad\.jsonl:1: expected an object'),
])
def test_iter_documents_bad_jsonl(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(line + "\n", encoding="utf-8")
    with pytest.raises(GolfError, match=message):
        list(iter_documents(path))


def test_iter_documents_bad_paths(tmp_path):
    with pytest.raises(GolfError, match="no such document file"):
        list(iter_documents(tmp_path / "missing.jsonl"))
    (tmp_path / "doc.csv").write_text("x")
    with pytest.raises(GolfError, match=r"doc\.csv: unsupported document file"):
        list(iter_documents(tmp_path / "doc.csv"))
    with pytest.raises(GolfError, match="directory has no .jsonl or .txt"):
        list(iter_documents(tmp_path))


# --- shards ---------------------------------------------------------------------------------

def test_build_shards_is_byte_identical_to_the_official_export(tmp_path):
    summary = build_shards([DOCS], TOKENIZER, tmp_path, num_val_docs=50, progress=False)
    for name, reference in SAMPLE_SHARDS.items():
        assert (tmp_path / name).read_bytes() == reference.read_bytes(), name
    assert summary["val"] == {"docs": 50, "tokens": 148_343, "shards": 1}
    assert summary["train"] == {"docs": 150, "tokens": 480_114, "shards": 1}
    assert summary["vocab_size"] == 1024 and summary["bos_id"] == 1
    assert len(summary["tokenizer_sha256"]) == 64


def test_build_shards_packs_documents_across_shard_boundaries(tmp_path):
    texts = [json.loads(line)["text"] for line in DOCS.read_text(encoding="utf-8").splitlines()[:6]]
    docs = write_jsonl(tmp_path / "docs.jsonl", texts)
    out = tmp_path / "out"
    summary = build_shards(docs, TOKENIZER, out, num_val_docs=2, shard_tokens=1000, progress=False)
    sp = spm.SentencePieceProcessor(model_file=str(TOKENIZER))
    for split, split_texts in (("val", texts[:2]), ("train", texts[2:])):
        files = sorted(out.glob(f"fineweb_{split}_*.bin"))
        sizes = [len(read_shard(f)) for f in files]
        expected = np.concatenate([[1, *sp.encode(t)] for t in split_texts])  # BOS + ids, no EOS
        assert sizes[:-1] == [1000] * (len(files) - 1) and 0 < sizes[-1] <= 1000
        assert np.array_equal(np.concatenate([read_shard(f) for f in files]), expected)
        assert summary[split] == {"docs": len(split_texts), "tokens": len(expected), "shards": len(files)}
        assert len(files) >= 2  # the test really crosses shard boundaries


def test_build_shards_refuses_to_overwrite_unless_asked(tmp_path):
    docs = write_jsonl(tmp_path / "docs.jsonl", ["alpha beta", "gamma delta", "epsilon"])
    out = tmp_path / "out"
    out.mkdir()
    stale = out / "fineweb_train_000009.bin"
    stale.write_bytes(b"old")
    with pytest.raises(GolfError, match="already holds 1 shards .*--force"):
        build_shards(docs, TOKENIZER, out, num_val_docs=1, progress=False)
    summary = build_shards(docs, TOKENIZER, out, num_val_docs=1, overwrite=True, progress=False)
    assert not stale.exists()
    assert sorted(p.name for p in out.iterdir()) == ["fineweb_train_000000.bin", "fineweb_val_000000.bin"]
    assert summary["val"]["docs"] == 1 and summary["train"]["docs"] == 2


def test_build_shards_input_errors(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(GolfError, match="no documents found in .*empty.jsonl"):
        build_shards(empty, TOKENIZER, tmp_path / "out", num_val_docs=0, progress=False)
    with pytest.raises(GolfError, match="tokenizer .*none.model not found"):
        build_shards(empty, tmp_path / "none.model", tmp_path / "out", num_val_docs=0, progress=False)
    with pytest.raises(GolfError, match="is not a valid SentencePiece model"):
        build_shards(empty, empty, tmp_path / "out", num_val_docs=0, progress=False)


def test_build_audits_every_document(tmp_path):
    summary = build_shards([DOCS], TOKENIZER, tmp_path, num_val_docs=50, progress=False)
    # The 200 documents decode back to their text; golf's count is the official rule's for sp1024.
    assert summary["audit"] == {"docs": 200, "bytes": 351_287 + 1_138_131, "official_rule_bytes": 1_489_418,
                                "rule": "official", "warnings": []}


def no_fallback_tokenizer(path: Path) -> Path:
    """A 512-piece BPE without byte fallback: characters it never saw become <unk>."""
    texts = [json.loads(line)["text"] for line in DOCS.read_text(encoding="utf-8").splitlines()[:40]]
    spm.SentencePieceTrainer.train(sentence_iterator=iter(texts), model_prefix=str(path), model_type="bpe",
                                   vocab_size=512, byte_fallback=False, add_dummy_prefix=False, pad_id=0, bos_id=1,
                                   eos_id=2, unk_id=3, minloglevel=2)
    return path.with_suffix(".model")


def test_build_refuses_unknown_tokens_and_keeps_old_shards(tmp_path):
    tokenizer = no_fallback_tokenizer(tmp_path / "nofallback")
    docs = write_jsonl(tmp_path / "docs.jsonl", ["plain text first", "then 日本語 and 🦜", "and ✓ ✓ again"])
    out = tmp_path / "out"
    build_shards(write_jsonl(tmp_path / "ok.jsonl", ["plain text", "more text"]), tokenizer, out,
                 num_val_docs=1, progress=False)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(GolfError, match=r"documents 0\.\.2 hold \d+ <unk> tokens \(the first in document 1\).*"
                                        r"byte-fallback tokenizer"):
        build_shards(docs, tokenizer, out, num_val_docs=1, overwrite=True, progress=False)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing lost, nothing partial


def test_corpus_audit_catches_ids_that_are_not_the_text_and_a_wrong_table():
    sp = spm.SentencePieceProcessor(model_file=str(TOKENIZER))
    audit = CorpusAudit(sp)
    audit.add(["Hello world"], [sp.encode("Hello world")])
    assert audit.summary() == {"docs": 1, "bytes": 11, "official_rule_bytes": 11, "rule": "official", "warnings": []}
    with pytest.raises(GolfError, match=r"document 1 does not decode back to its text \(from character 6: "
                                        r"'world' became 'there'\)"):
        audit.add(["Hello world"], [sp.encode("Hello there")])
    base = audit.table.base_bytes.clone()
    base[4:260] = 3  # byte pieces worth 3 bytes
    audit.table = dataclasses.replace(audit.table, base_bytes=base)
    with pytest.raises(GolfError, match="document 1: the byte table credits 9 bytes but the text decodes to 5"):
        audit.add(["é ok"], [sp.encode("é ok")])  # é is two byte pieces


# --- tokenizer ------------------------------------------------------------------------------

def test_train_tokenizer_official_settings(tmp_path):
    model = train_tokenizer(DOCS, tmp_path / "tok" / "sp512", vocab_size=512, max_docs=40, progress=False)
    assert model == tmp_path / "tok" / "sp512.model" and model.with_suffix(".vocab").is_file()
    sp = spm.SentencePieceProcessor(model_file=str(model))
    assert sp.vocab_size() == 512
    assert [sp.id_to_piece(i) for i in range(4)] == ["<pad>", "<s>", "</s>", "<unk>"]
    assert sp.is_byte(4) and sp.id_to_piece(4) == "<0x00>"  # byte fallback: 256 byte pieces from id 4
    assert not sp.id_to_piece(sp.encode("hello")[0]).startswith("\u2581")  # no dummy prefix
    assert len(sp.encode("2024")) == 4  # split_digits
    text = "Ünïcode ✓ 日本"
    assert sp.decode(sp.encode(text)) == text and sp.unk_id() not in sp.encode(text)
    tokenizer_class = classify_tokenizer(sp)
    assert tokenizer_class.spec.byte_fallback and tokenizer_class.rule == "official"
    assert sorted(p.name for p in model.parent.iterdir()) == ["sp512.model", "sp512.vocab"]  # no staging files
    again = train_tokenizer(DOCS, tmp_path / "again", vocab_size=512, max_docs=40, progress=False)
    assert again.with_suffix(".vocab").read_bytes() == model.with_suffix(".vocab").read_bytes()


def test_train_tokenizer_errors_are_golf_errors(tmp_path):
    with pytest.raises(GolfError, match="sentencepiece training failed: Vocabulary size is smaller"):
        train_tokenizer(DOCS, tmp_path / "tiny", vocab_size=300, max_docs=40, progress=False)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\nnot json\n', encoding="utf-8")
    with pytest.raises(GolfError, match=r"bad\.jsonl:2: bad JSON"):  # our error, not sentencepiece's
        train_tokenizer(bad, tmp_path / "t", vocab_size=300, progress=False)


def test_train_tokenizer_refuses_a_tokenizer_it_cannot_count(tmp_path):
    # Text without spaces gives no "▁" piece: spaces would be 3 byte-fallback bytes (issue #897).
    docs = write_jsonl(tmp_path / "nospace.jsonl", ["abcabcabdabdab", "bcdbcdbcdaabb", "ddccbbaa"] * 20)
    with pytest.raises(GolfError, match='the trained tokenizer has no standalone "▁" piece'):
        train_tokenizer(docs, tmp_path / "tok" / "nospace", vocab_size=270, progress=False)
    assert not (tmp_path / "tok").exists() or list((tmp_path / "tok").iterdir()) == []  # nothing left behind


# --- CLI ------------------------------------------------------------------------------------

def test_cli_build_and_tokenizer(tmp_path, capsys):
    out = tmp_path / "shards"
    argv = ["data", "build", str(DOCS), "--tokenizer", str(TOKENIZER), "--out", str(out), "--val-docs", "50",
            "--json"]
    assert run_cli(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["val"]["tokens"] == 148_343 and summary["train"]["shards"] == 1
    with pytest.raises(GolfError, match="--force"):
        run_cli(argv)
    assert run_cli([*argv[:-1], "--force", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "148,343 tokens" in out
    assert "byte audit: 200 docs decode back to their text, 1,489,418 bytes (exact; the official rule counts" in out

    prefix = tmp_path / "tok" / "mine"
    assert run_cli(["data", "tokenizer", str(DOCS), "--out", str(prefix), "--vocab-size", "512",
                    "--max-docs", "40", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result == {"model": f"{prefix}.model", "vocab": f"{prefix}.vocab", "vocab_size": 512,
                      "byte_rule": "official"}
