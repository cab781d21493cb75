"""Every class of SentencePiece tokenizer is counted exactly or refused in one line before training.

Each class of tokenizer_kit.CLASSES is trained small on the embedded documents (plus a few that
exercise whitespace and rare characters), built into shards by `golf data build`'s code (which
audits every document) and its val split counted three ways: golf's table, the official rule,
and the UTF-8 length of the decoded documents.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm
import torch

import quant
import tokenizer_kit as kit
from conftest import REPO, TINY_TRAIN_ENV, run_cli
from golf import embedded, models
from golf.bpb import build_byte_table, same_table, scoring_table, stream_bytes, tokenizer_refusal
from golf.data import write_shard
from golf.errors import GolfError
from golf.launch import train_env
from golf.score import score_artifact
from golf.spm_model import read_spec
from golf.tokenizers import classify_tokenizer

@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    """name -> (model file, kit.measure result) for every class; ~20 s on 2 cores, once per session."""
    root = tmp_path_factory.mktemp("tokenizer_classes")
    out = {}
    for i, (name, (settings, _)) in enumerate(kit.CLASSES.items()):
        work = root / f"class{i}"
        work.mkdir()
        model = kit.train(settings, work / "tok.model")
        out[name] = (model, kit.measure(model, work))
    return out


def check_outcome(model: Path, result: dict, expected: str | None) -> None:
    """The acceptance, for one tokenizer: exact bytes over the scored targets, or a one-line refusal."""
    if result["refused"]:
        assert expected in (None, "refused"), result["refused"]
        assert "\n" not in result["refused"] and result["refused_by"] in ("classification", "golf data build")
        # Refused before anything was trained on it: no shard was left behind.
        assert not list(model.parent.glob("shards/*.bin")) and not list(model.parent.glob("shards/.golf-build-*"))
        return
    assert expected in (None, result["rule"])
    assert result["exact_bytes"] == result["decoded_bytes"] == result["audit"]["bytes"]
    assert result["official_rule_bytes"] == result["audit"]["official_rule_bytes"]
    sp = spm.SentencePieceProcessor(model_file=str(model))
    tables_agree = same_table(build_byte_table(sp), build_byte_table(sp, rule="official"))
    assert (result["rule"] == "official") == tables_agree == (result["differences"] == [])
    if result["exact_bytes"] != result["official_rule_bytes"]:  # said once, with both totals
        assert result["rule"] == "exact"
        assert f"{result['exact_bytes']:,}" in result["note"] and f"{result['official_rule_bytes']:,}" in result["note"]
    else:
        assert result["note"] is None


@pytest.mark.parametrize("name", list(kit.CLASSES))
def test_class_is_exact_or_refused(trained, name):
    model, result = trained[name]
    check_outcome(model, result, kit.CLASSES[name][1])


@pytest.mark.parametrize("name", [n for n, (_, rule) in kit.CLASSES.items() if rule == "exact"])
def test_official_rule_miscounts_these_classes_on_real_text(trained, name):
    _, result = trained[name]
    assert result["official_rule_bytes"] != result["exact_bytes"]


def test_refusals_name_the_cause_and_the_fix(trained):
    _, no_fallback = trained["no byte fallback"]
    assert no_fallback["refused_by"] == "golf data build" and "<unk>" in no_fallback["refused"]
    assert "byte-fallback tokenizer" in no_fallback["refused"]
    _, suffix = trained["whitespace as suffix, dummy prefix"]
    assert suffix["refused_by"] == "classification" and "add_dummy_prefix=false" in suffix["refused"]


def test_private_use_markers_are_counted_with_a_warning(trained, tmp_path, capsys):
    model, result = trained["user-defined private-use markers"]
    assert result["rule"] == "official" and len(result["warnings"]) == 1
    assert "'\\ue001', '\\ue002'" in result["warnings"][0] and "CaseOps" in result["warnings"][0]
    assert all(not trained[name][1]["warnings"] for name in kit.CLASSES if name != "user-defined private-use markers")
    docs = tmp_path / "marked.jsonl"
    docs.write_text(json.dumps({"text": "\ue001hello \ue002world"}) + "\n", encoding="utf-8")
    assert run_cli(["data", "build", str(docs), "--tokenizer", str(model), "--out", str(tmp_path / "out"),
                    "--val-docs", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    # The markers decode to 3 bytes each, and that is what is counted: "hello world" is 11 bytes.
    assert "byte audit: 1 docs decode back to their text, 17 bytes" in out and "warning: 2 user-defined" in out


def test_vocab_sizes_are_reached(trained):
    assert [trained[n][1]["vocab_size"] for n in ("bpe", "vocab 4k", "vocab 8k", "unigram 8k, no split by whitespace")] \
        == [1024, 4096, 8192, 8192]


@pytest.mark.parametrize("name", list(kit.CLASSES))
def test_model_spec_reads_the_training_settings(trained, name):
    settings = {**kit.CHALLENGE, **kit.CLASSES[name][0]}
    spec = read_spec(spm.SentencePieceProcessor(model_file=str(trained[name][0])))
    assert (spec.model_type, spec.normalizer, spec.split_by_whitespace, spec.byte_fallback, spec.add_dummy_prefix,
            spec.remove_extra_whitespaces, spec.treat_whitespace_as_suffix) == (
        settings["model_type"], settings["normalization_rule_name"], settings["split_by_whitespace"],
        settings["byte_fallback"], settings["add_dummy_prefix"], settings["remove_extra_whitespaces"],
        settings.get("treat_whitespace_as_suffix", False))
    assert spec.piece_types.count("user_defined") == len(settings.get("user_defined_symbols", []))


def test_exact_table_counts_what_each_piece_decodes_to(trained):
    # After a boundary a piece is worth what it decodes to alone; after a letter, that plus the
    # space the decoder would have dropped at the start. Checked piece by piece, not on a corpus.
    for name in ("bpe, no split by whitespace", "identity, extra whitespace kept", "whitespace as suffix"):
        sp = spm.SentencePieceProcessor(model_file=str(trained[name][0]))
        table = build_byte_table(sp)
        letter = sp.piece_to_id("a")
        assert letter != sp.unk_id() and sp.decode([letter]) == "a"
        pieces = [i for i, kind in enumerate(read_spec(sp).piece_types) if kind in ("normal", "user_defined")]
        alone = [len(s.encode()) for s in sp.decode([[i] for i in pieces])]
        after = [len(s.encode()) - 1 for s in sp.decode([[letter, i] for i in pieces])]
        ids = torch.tensor(pieces)
        bos = torch.full_like(ids, sp.bos_id())
        assert build_byte_table(sp).vocab_size == sp.vocab_size()
        assert torch.equal(table.base_bytes[ids].long() + (table.has_leading_space[ids] & ~table.is_boundary[bos]),
                           torch.tensor(alone)), name
        assert torch.equal(table.base_bytes[ids].long() + table.has_leading_space[ids], torch.tensor(after)), name


def test_escape_whitespaces_off_is_refused():
    # sentencepiece's trainers refuse escape_whitespaces=false, so edit the challenge model: a
    # second normalizer_spec {escape_whitespaces: 0} merges into the first, as protobuf does.
    edited = embedded.tokenizer_path().read_bytes() + bytes([0x1A, 0x02, 0x28, 0x00])
    sp = spm.SentencePieceProcessor(model_proto=edited)
    spec = read_spec(sp)
    assert (spec.normalizer, spec.escape_whitespaces, spec.remove_extra_whitespaces) == ("nmt_nfkc", False, True)
    assert "escape_whitespaces=false" in tokenizer_refusal(sp, spec)
    with pytest.raises(GolfError, match="escape_whitespaces=false"):
        build_byte_table(sp)


# --- where the refusals and the notes surface: CLI, scorer, trainer -----------------------------

def test_cli_info_classifies_a_tokenizer(trained, capsys):
    model, _ = trained["bpe, no split by whitespace"]
    assert run_cli(["data", "info", "--tokenizer", str(model)]) == 0
    text = capsys.readouterr().out
    assert "split_by_whitespace off" in text and "official rule (build_sentencepiece_luts) miscounts" in text
    assert "besides a leading one" in text
    refused, _ = trained["whitespace as suffix, dummy prefix"]
    assert run_cli(["data", "info", "--tokenizer", str(refused), "--json"]) == 1
    info = json.loads(capsys.readouterr().out)
    assert info["ok"] is False and info["tokenizer"]["rule"] == "refused"
    assert info["tokenizer"]["treat_whitespace_as_suffix"] is True
    assert run_cli(["data", "info", "--tokenizer", "embedded"]) == 0
    assert "exact; golf's table equals the official rule" in capsys.readouterr().out
    with pytest.raises(GolfError, match="needs a shard path, --tokenizer MODEL, or both"):
        run_cli(["data", "info"])


def unk_shards(trained, tmp_path: Path) -> tuple[Path, Path, int]:
    """Shards written around the build's audit, from a tokenizer without byte fallback: val holds <unk>."""
    model, _ = trained["no byte fallback"]
    sp = spm.SentencePieceProcessor(model_file=str(model))
    tokens = np.concatenate([[sp.bos_id(), *ids] for ids in sp.encode(kit.corpus())]).astype(np.uint16)
    data = tmp_path / "unk_shards"
    data.mkdir()
    write_shard(data / "fineweb_val_000000.bin", tokens)
    write_shard(data / "fineweb_train_000000.bin", tokens)
    return model, data, int((tokens[1:] == sp.unk_id()).sum())


def tiny_artifact(path: Path, tokenizer: Path) -> Path:
    torch.manual_seed(0)
    model = models.build("ar", dict(vocab_size=1024, num_layers=1, model_dim=32, num_heads=4, num_kv_heads=2))
    meta = {"model": {"variant": "ar", "config": model.config_dict()},
            "tokenizer": {"sha256": embedded.file_sha256(tokenizer)}, "eval": {"seq_len": 64}}
    quant.write_artifact(path, model.state_dict(), rule="int8", roles=model.checked_roles(), meta=meta)
    return path


def test_score_refuses_unknown_tokens_and_reports_both_totals(trained, tmp_path, capsys):
    model, data, unknown = unk_shards(trained, tmp_path)
    assert unknown > 0
    with pytest.raises(GolfError, match=f"hold {unknown:,} <unk> tokens .* byte-fallback tokenizer"):
        score_artifact(tiny_artifact(tmp_path / "unk.golf", model), data=data, tokenizer=model, progress=False)

    model, result = trained["bpe, no split by whitespace"]
    artifact = tiny_artifact(tmp_path / "nosplit.golf", model)
    report = score_artifact(artifact, data=model.parent / "shards", tokenizer=model, max_tokens=19_201,
                            progress=False)
    tokens = torch.from_numpy(np.fromfile(model.parent / "shards" / "fineweb_val_000000.bin", dtype="<u2",
                                          offset=1024)[:19_201].astype(np.int64))
    sp = spm.SentencePieceProcessor(model_file=str(model))
    assert report["bytes"] == stream_bytes(build_byte_table(sp), tokens)
    assert report["official_rule_bytes"] == stream_bytes(build_byte_table(sp, rule="official"), tokens)
    assert report["official_rule_bytes"] > report["bytes"] and "official rule" in report["byte_rule_note"]
    assert run_cli(["score", str(artifact), "--data", str(model.parent / "shards"), "--tokenizer", str(model),
                    "--max-tokens", "19201", "--no-progress"]) == 0
    assert capsys.readouterr().out.count("the official rule (build_sentencepiece_luts) would count") == 1


def test_scoring_table_for_the_challenge_tokenizer_has_no_note():
    sp = spm.SentencePieceProcessor(model_file=str(embedded.tokenizer_path()))
    tokens = torch.tensor([1, *sp.encode("Hello world, this is golf.")])
    table, difference = scoring_table(sp, tokens, 1100)
    assert difference is None and table.vocab_size == 1100


def test_trainer_refuses_unknown_tokens_before_training(trained, tmp_path):
    model, data, unknown = unk_shards(trained, tmp_path)
    env = train_env(tmp_path / "run", {**TINY_TRAIN_ENV, "DATA_PATH": str(data), "TOKENIZER_PATH": str(model),
                                       "ITERATIONS": "2", "VAL_MAX_TOKENS": "0"})  # 0: the whole val split
    proc = subprocess.run([sys.executable, str(REPO / "train_gpt.py")], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("train_gpt.py: error: the scored val tokens hold ")
    assert f"{unknown:,} <unk> tokens" in lines[0]
    assert "step:1/" not in proc.stdout


def test_trainer_logs_both_totals_once_and_scores_exactly(trained, tmp_path):
    model, _ = trained["bpe, no split by whitespace"]
    data = tmp_path / "data"
    data.mkdir()
    val = (model.parent / "shards" / "fineweb_val_000000.bin").read_bytes()
    (data / "fineweb_val_000000.bin").write_bytes(val)
    (data / "fineweb_train_000000.bin").write_bytes(val)
    run_dir = tmp_path / "run"
    env = train_env(run_dir, {**TINY_TRAIN_ENV, "DATA_PATH": str(data), "TOKENIZER_PATH": str(model),
                              "ITERATIONS": "2", "VAL_MAX_TOKENS": "8193", "MAX_WALLCLOCK_SECONDS": "0"})
    proc = subprocess.run([sys.executable, str(REPO / "train_gpt.py")], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((run_dir / "result.json").read_text())
    tokens = torch.from_numpy(np.frombuffer(val, dtype="<u2", offset=1024)[:8193].astype(np.int64))
    sp = spm.SentencePieceProcessor(model_file=str(model))
    assert result["bytes"] == stream_bytes(build_byte_table(sp), tokens)
    assert result["official_rule_bytes"] == stream_bytes(build_byte_table(sp, rule="official"), tokens)
    assert result["official_rule_bytes"] > result["bytes"]
    log = (run_dir / "train.log").read_text()
    assert log.count(f"would count {result['official_rule_bytes']:,}") == 1


# --- the wide sweep ------------------------------------------------------------------------------

@pytest.mark.slow  # 96 tokenizers, ~100 s on 2 cores
@pytest.mark.parametrize("settings", kit.SWEEP, ids=lambda s: "-".join(str(v) for v in s.values()))
def test_sweep_every_combination(tmp_path, settings):
    model = kit.train(settings, tmp_path / "tok.model")
    check_outcome(model, kit.measure(model, tmp_path), None)
