"""The `golf` CLI: dispatch, one-line errors for bad artifacts, the tokenizer guard, --json."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest
import torch

import quant
from golf import embedded, models
from golf.cli import COMMANDS, build_parser, main

TINY = dict(vocab_size=1024, num_layers=2, model_dim=32, num_heads=4, num_kv_heads=2)


def write_tiny_artifact(path, tokenizer_sha: str = embedded.EMBEDDED_TOKENIZER_SHA256):
    torch.manual_seed(0)
    model = models.build("ar", TINY)
    meta = {"model": {"variant": "ar", "config": model.config_dict()},
            "tokenizer": {"name": "fineweb_1024_bpe.model", "sha256": tokenizer_sha, "vocab_size": 1024},
            "eval": {"seq_len": 64}}
    quant.write_artifact(path, model.state_dict(), rule="int8", roles=model.checked_roles(), meta=meta)
    return path


def run_cli(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_every_command_is_in_the_parser_with_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == {"demo", "score", "inspect", "budget", "data", "pack", "export", "generate", "golfers",
                                "report", "toy"}
    assert len(COMMANDS) == len(sub.choices)
    for name, p in sub.choices.items():
        assert p.format_help().strip() and p.epilog, name


def test_python_dash_m_golf_runs():
    proc = subprocess.run([sys.executable, "-m", "golf", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith("golf ")


def test_score_json_on_a_fresh_artifact(tmp_path, capsys):
    path = write_tiny_artifact(tmp_path / "m.golf")
    code, out, _ = run_cli(["score", str(path), "--max-tokens", "4096", "--json", "--no-progress"], capsys)
    report = json.loads(out)
    assert code == 0 and report["label"] == "exact" and report["tokens"] == 4032
    # An untrained model is close to uniform over 1024 tokens: about ln(1024) nats per token.
    assert abs(report["val_loss"] - 6.93) < 0.1
    assert report["val_bpb"] == pytest.approx(report["val_loss"] * report["tokens"] / report["bytes"] / 0.6931471805599453)


def test_score_refuses_another_tokenizer(tmp_path, capsys):
    path = write_tiny_artifact(tmp_path / "m.golf", tokenizer_sha="0" * 64)
    code, out, err = run_cli(["score", str(path), "--max-tokens", "4096"], capsys)
    assert code == 2 and out == ""
    assert err.startswith("golf: error: tokenizer") and "is not the one" in err and err.count("\n") == 1


def _forge_version(data: bytes, version: int) -> bytes:
    body = data[:4] + version.to_bytes(2, "little") + data[6:-32]
    return body + hashlib.sha256(body).digest()


@pytest.mark.parametrize("damage,message", [
    (lambda d: d[: len(d) // 2], "truncated"),
    (lambda d: d[:100] + bytes([d[100] ^ 0x01]) + d[101:], "corrupted"),
    (lambda d: b"PK\x03\x04" + d[4:], "not a golf artifact"),
    (lambda d: _forge_version(d, 2), "newer than this golf supports"),
])
def test_bad_artifacts_get_one_line_errors(tmp_path, capsys, damage, message):
    good = write_tiny_artifact(tmp_path / "good.golf").read_bytes()
    bad = tmp_path / "bad.golf"
    bad.write_bytes(damage(good))
    code, out, err = run_cli(["score", str(bad)], capsys)
    assert code == 2 and out == ""
    assert err.startswith("golf: error: ") and message in err and err.count("\n") == 1
    assert "Traceback" not in err


def test_missing_files_are_one_line_errors(tmp_path, capsys):
    code, _, err = run_cli(["score", str(tmp_path / "nope.golf")], capsys)
    assert code == 2 and err.startswith("golf: error: ") and err.count("\n") == 1
    path = write_tiny_artifact(tmp_path / "m.golf")
    code, _, err = run_cli(["score", str(path), "--data", str(tmp_path / "empty")], capsys)
    assert code == 2 and ("no files matching" in err or "no fineweb_val" in err)


def test_demo_rejects_a_bad_env_override(capsys):
    code, _, err = run_cli(["demo", "--env", "NOEQUALS"], capsys)
    assert code == 2 and "KEY=VAL" in err
