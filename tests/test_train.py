"""train_gpt.py end to end under a real torchrun on CPU: outputs, roundtrip, stops."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from types import SimpleNamespace

import pytest

import quant
from conftest import REPO, TINY_TRAIN_ENV, read_result, run_trainer
from golf.cli import main as golf_main
from golf.launch import train_env


def load_train_gpt():
    spec = importlib.util.spec_from_file_location("train_gpt_under_test", REPO / "train_gpt.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ddp_run_writes_log_artifact_and_result(trained_run):
    result = read_result(trained_run)
    log = (trained_run / "train.log").read_text()
    assert result["world_size"] == 2 and result["steps"] == 6 and result["label"] == "exact"
    assert result["bytes_total"] == result["bytes_model"] + result["bytes_code"]
    assert result["bytes_model"] == (trained_run / "model.golf").stat().st_size
    assert "source_sha256:" in log and "versions python:" in log and "hardware cpu:" in log
    assert "final_int8_zstd22_roundtrip_exact val_loss:" in log
    assert f"{result['val_bpb']:.8f}" in log
    assert 1.0 < result["val_bpb"] < 10.0


def test_golf_score_equals_the_trainer_roundtrip(trained_run, capsys):
    code = golf_main(["score", str(trained_run / "model.golf"), "--max-tokens", "32768", "--json",
                      "--no-progress", "--audit"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["ok"]
    result = read_result(trained_run)
    assert abs(report["val_bpb"] - result["val_bpb"]) < 1e-6
    assert report["tokens"] == result["tokens"] and report["bytes"] == result["bytes"]
    assert report["audit"]["docs_failed"] == 0 and report["audit"]["docs_checked"] > 0


def test_wallclock_cap_stops_early_and_still_writes_the_artifact(tmp_path):
    run_dir = tmp_path / "capped"
    proc = run_trainer(run_dir, {"ITERATIONS": "100000", "MAX_WALLCLOCK_SECONDS": "3"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = read_result(run_dir)
    assert 0 < result["steps"] < 100000
    assert "stopping_early: wallclock_cap" in (run_dir / "train.log").read_text()
    assert (run_dir / "model.golf").stat().st_size == result["bytes_model"]
    # A second run into the same folder is refused and leaves the first one untouched.
    again = run_trainer(run_dir, {"ITERATIONS": "2", "MAX_WALLCLOCK_SECONDS": "0"})
    assert again.returncode != 0 and "already holds a run" in again.stderr + again.stdout
    assert read_result(run_dir) == result


def test_mixed_rule_with_gptq_qat_and_auto_compressor(tmp_path):
    run_dir = tmp_path / "mixed"
    rule = "emb=int4g32,attn=int6,mlp=int5,gptq=1"
    proc = run_trainer(run_dir, {"ITERATIONS": "6", "QUANT": rule, "COMPRESSOR": "auto", "QAT_START_FRAC": "0.5",
                                 "GPTQ_CALIB_TOKENS": "4096"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = read_result(run_dir)
    log = (run_dir / "train.log").read_text()
    assert "qat:enabled step:3 layers:13" in log and result["qat"] is True
    assert "gptq:calibration layers:12 tokens:4096" in log and result["gptq_seconds"] > 0
    manifest = quant.read_manifest(run_dir / "model.golf")
    assert manifest["rule"] == result["quant"] == quant.parse_rule(rule).spec
    assert result["compressor"] in quant.compressor_names()  # auto records the winner, not "auto"
    assert manifest["tensors"]["blocks.0.mlp.fc.weight"]["meta"]["gptq"] is True
    # The artifact scores close to the unquantized model: the suite is not silently broken.
    assert abs(result["val_bpb"] - result["pre_quant_val_bpb"]) < 0.05


def test_bad_quant_rule_fails_before_training(tmp_path):
    proc = run_trainer(tmp_path / "bad", {"ITERATIONS": "2", "QUANT": "attn=int3"})
    assert proc.returncode != 0 and "train_gpt.py: error: unknown quantization scheme 'int3'" in proc.stderr
    assert "step:1/" not in proc.stdout


def test_nan_loss_stops_with_a_clear_message_and_keeps_last_good_weights(tmp_path):
    run_dir = tmp_path / "diverged"
    # An absurd embedding LR overflows the weights to inf within a couple of steps.
    proc = run_trainer(run_dir, {"ITERATIONS": "50", "MAX_WALLCLOCK_SECONDS": "0", "TIED_EMBED_LR": "1e38"})
    assert proc.returncode != 0
    log = (run_dir / "train.log").read_text()
    assert "non-finite train loss" in log
    assert (run_dir / "model_lastgood.golf").exists()
    assert not (run_dir / "result.json").exists()


@pytest.mark.parametrize("step,elapsed,expected", [(0, 0.0, 1.0), (50, 50_000.0, 1.0), (90, 90_000.0, 0.5),
                                                   (99, 99_000.0, 0.05)])
def test_time_based_warmdown_fraction(step, elapsed, expected):
    tg = load_train_gpt()
    args = SimpleNamespace(min_lr=0.0, max_wallclock_seconds=100.0, warmdown_frac=0.2, warmdown_iters=1200, iterations=10**6)
    assert tg.lr_multiplier(args, step, elapsed) == pytest.approx(expected)


def test_min_lr_floors_the_warmdown():
    tg = load_train_gpt()
    args = SimpleNamespace(min_lr=0.1, max_wallclock_seconds=100.0, warmdown_frac=0.2, warmdown_iters=1200,
                           iterations=10**6)
    assert tg.lr_multiplier(args, 90, 90_000.0) == pytest.approx(0.5)  # above the floor: unchanged
    assert tg.lr_multiplier(args, 99, 99_000.0) == pytest.approx(0.1)  # 0.05 would be below it


def test_official_warmdown_rules():
    tg = load_train_gpt()
    # Capped: warmdown lasts WARMDOWN_ITERS × the mean step time (here 10 steps × 1 s).
    capped = SimpleNamespace(min_lr=0.0, max_wallclock_seconds=100.0, warmdown_frac=0.0, warmdown_iters=10, iterations=10**6)
    assert tg.lr_multiplier(capped, 50, 50_000.0) == 1.0
    assert tg.lr_multiplier(capped, 95, 95_000.0) == pytest.approx(0.5)
    # Uncapped: the last WARMDOWN_ITERS steps by count.
    uncapped = SimpleNamespace(min_lr=0.0, max_wallclock_seconds=0.0, warmdown_frac=0.0, warmdown_iters=10, iterations=100)
    assert tg.lr_multiplier(uncapped, 89, 0.0) == 1.0
    assert tg.lr_multiplier(uncapped, 95, 0.0) == pytest.approx(0.5)


def test_missing_data_is_a_one_line_error(tmp_path):
    env = train_env(tmp_path / "run", {**TINY_TRAIN_ENV, "DATA_PATH": str(tmp_path)})
    proc = subprocess.run([sys.executable, str(REPO / "train_gpt.py")], env=env, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"train_gpt.py: error: no fineweb_train_*.bin shards in {tmp_path} "
        "(get shards with `golf data fetch` or `golf data build`)"]
