"""The trainer's clocks and compliance record: GPTQ calibration inside the training cap, an eval
clock from the artifact read to the last score, the records' log lines, result.json `compliance`."""

from __future__ import annotations

import json
import re

import pytest

from conftest import read_result, run_cli, run_trainer
from golf import clocks
from golf.challenge import EVAL_SECONDS


@pytest.fixture(scope="module")
def capped_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("clocks") / "gptq"
    env = {"ITERATIONS": "100000", "MAX_WALLCLOCK_SECONDS": "8", "GPTQ_RESERVE_SECONDS": "4",
           "QUANT": "int6,gptq=1", "GPTQ_CALIB_TOKENS": "4096", "VAL_MAX_TOKENS": "4096",
           "EVAL_STRIDE": "32", "TTT_ENABLED": "1", "TTT_CHUNK_TOKENS": "1024", "TTT_EPOCHS": "1"}
    proc = run_trainer(run_dir, env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return run_dir


def test_gptq_calibration_ends_inside_the_wallclock_cap(capped_run):
    log = (capped_run / "train.log").read_text()
    assert "gptq:reserving 4s, effective=4000ms" in log
    assert "stopping_early: wallclock_cap" in log
    end = re.search(r"gptq:calibration_end train_clock:(\d+)ms cap:8000ms (\w+)", log)
    assert end and end[2] == "inside_cap" and int(end[1]) <= 8000
    stop = int(re.search(r"stopping_early: wallclock_cap train_time:(\d+)ms", log)[1])
    assert 4000 <= stop < 8000 and stop < int(end[1])  # stopped at the reserve, calibrated after
    c = read_result(capped_run)["compliance"]
    assert c["gptq_reserve_seconds"] == 4 and c["train_inside_cap"] is True and c["stopping_early_wallclock_cap"]
    assert c["train_clock_seconds"] == pytest.approx(c["train_seconds"] + c["gptq_calibration_seconds"], abs=2e-3)


def test_the_final_eval_is_the_plan_with_its_clock_and_compliance_lines(capped_run):
    log = (capped_run / "train.log").read_text()
    result = read_result(capped_run)
    assert result["final_eval"] == "legal_ttt" and result["eval_plan"]["stride"] == 32
    assert result["val_bpb"] == result["evals"]["legal_ttt"]["val_bpb"] != result["evals"]["roundtrip"]["val_bpb"]
    assert re.search(r"final_int6_gptq_1_zstd22_legal_ttt_exact val_loss:[\d.]+ val_bpb:[\d.]+", log)
    assert re.search(r"ttt:score_first verified:1 chunks:\d+ updates:\d+", log)
    total = re.search(r"total_eval_time:([\d.]+)s \(read:[\d.]+s build:[\d.]+s roundtrip:[\d.]+s legal_ttt", log)
    c = result["compliance"]
    assert total and float(total[1]) == pytest.approx(c["total_eval_seconds"], abs=0.01)
    assert set(c["eval_phases_seconds"]) == {"read", "build", "roundtrip", "legal_ttt"}
    assert c["eval_cap_seconds"] == EVAL_SECONDS and c["eval_inside_cap"] is True
    assert c["bytes_total"] == result["bytes_total"] and c["under_cap_bytes"] is True
    assert c["score_first_ttt"]["verified"] and c["score_first_ttt"]["targets_scored"] == result["tokens"]
    assert "compliance: bytes_total:" in log and "score_first_ttt:verified" in log


def test_golf_score_reproduces_the_trainer_plan_by_default(capped_run, capsys):
    result = read_result(capped_run)
    assert run_cli(["score", str(capped_run), "--max-tokens", "4096", "--json", "--no-progress"]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["eval"] == "legal_ttt" and scored["stride"] == 32 and scored["tokens"] == result["tokens"]
    assert scored["val_bpb"] == pytest.approx(result["val_bpb"], abs=1e-5)
    assert scored["total_eval_seconds"] >= scored["eval_phases_seconds"]["legal_ttt"]
    assert run_cli(["score", str(capped_run), "--max-tokens", "4096", "--no-ttt", "--stride", "64",
                    "--json", "--no-progress"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert plain["val_bpb"] == pytest.approx(result["evals"]["roundtrip"]["val_bpb"], abs=1e-9)
    # Document TTT on the same artifact: the same targets, each document alone, the order proven.
    assert run_cli(["score", str(capped_run), "--max-tokens", "4096", "--ttt-mode", "docs", "--ttt-lora-rank", "4",
                    "--json", "--no-progress"]) == 0
    docs = json.loads(capsys.readouterr().out)
    assert docs["ttt"]["mode"] == "docs" and docs["ttt"]["lora_rank"] == 4 and docs["ttt_documents"] >= 1
    assert (docs["tokens"], docs["bytes"]) == (result["tokens"], result["bytes"]) and docs["score_first"]["verified"]
    assert docs["score_first"]["adapter_positions_read"] > 0 and docs["val_bpb"] != scored["val_bpb"]


def test_compliance_verdicts():
    clock = clocks.EvalClock()
    clock.phases.update(read=1.0, score=700.0)
    common = dict(bytes_model=15_000_000, bytes_code=50_000, max_wallclock_seconds=600.0, steps=1000, gptq=True,
                  reserve_s=12.0, eval_clock=clock, final_eval="windows", score_first=None, world_size=8)
    # One step past the cap after stopping_early is the records' accepted overshoot; 3 s of calibration after it is not.
    ok = clocks.compliance(train_ms=588_500.0, stopped_early=True, calibration_s=11.0, **common)
    late = clocks.compliance(train_ms=588_500.0, stopped_early=True, calibration_s=15.0, **common)
    assert ok["train_inside_cap"] is True and late["train_inside_cap"] is False
    assert ok["eval_inside_cap"] is False and ok["under_cap_bytes"] is True
    assert "inside_cap:1" in clocks.compliance_line(ok) and "inside_cap:0" in clocks.compliance_line(late)
    assert clocks.training_cap_ms(600.0, 12.0) == 588_000.0 and clocks.training_cap_ms(0.0, 12.0) is None
