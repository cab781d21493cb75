"""`golf demo`, the README's main command, end to end through the real console script (slow)."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest


@pytest.mark.slow
def test_golf_demo_trains_writes_and_scores(tmp_path):
    golf = shutil.which("golf")
    assert golf, "the golf console script is not installed"
    out = tmp_path / "demo"
    proc = subprocess.run([golf, "demo", "--out", str(out), "--seconds", "30", "--json"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert summary["ok"] and summary["label"] == "exact"
    assert summary["score_vs_trainer_abs_diff"] <= 1e-6
    assert summary["steps"] > 5 and summary["val_bpb"] < 4.0  # learned something beyond uniform (~4.2)
    assert summary["bytes_total"] < summary["cap"]
    assert (out / "model.golf").stat().st_size == summary["bytes_model"]
    assert "final_int8_zstd22_roundtrip_exact" in proc.stderr
