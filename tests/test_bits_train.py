"""MODEL=bits through the real trainer (torchrun on CPU), `golf score` and `golf pack`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import quant
from conftest import read_result, run_cli, run_trainer
from golf.selfcontained import unpack

RUNS = {
    # exact head, hierarchical code built from train co-occurrences before step 0, 2 ranks
    "ar": ({"HEAD": "ar", "CODE": "cooc", "CODE_TOKENS": "100000"}, 2),
    # the diffusion head: a Monte Carlo bound
    "diffusion": ({"HEAD": "diffusion", "EVAL_SAMPLES": "2"}, 1),
    # BitLM: 4 tokens per backbone position, its head's own quantization group, 2 ranks
    "block": ({"HEAD": "diffusion", "BLOCK": "4", "QUANT": "bits=int8,bithead=int6"}, 2),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bits")
    out = {}
    for name, (env, nproc) in RUNS.items():
        run_dir = root / name
        proc = run_trainer(run_dir, {"MODEL": "bits", "HEAD_WIDTH": "64", "ITERATIONS": "4",
                                     "MAX_WALLCLOCK_SECONDS": "0", **env}, nproc=nproc)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        out[name] = run_dir
    return out


def test_each_head_and_block_mode_train_end_to_end(runs):
    results = {name: read_result(run_dir) for name, run_dir in runs.items()}
    assert results["ar"]["label"] == "exact" and results["ar"]["val_bpb_stderr"] is None
    assert results["ar"]["world_size"] == 2 and results["block"]["world_size"] == 2
    for name in ("diffusion", "block"):
        assert results[name]["label"] == "bound" and results[name]["val_bpb_stderr"] > 0
    for result in results.values():
        assert result["model"] == "bits" and result["steps"] == 4 and 1.0 < result["val_bpb"] < 10.0
    assert results["block"]["model_config"]["block"] == 4
    log = (runs["ar"] / "train.log").read_text()
    assert 'fit_to_train {"bits": 10, "code": "cooc"' in log


def test_the_code_table_ships_in_the_artifact(runs):
    stored = quant.read_quantized(runs["ar"] / "model.golf")
    table = quant.read_artifact(runs["ar"] / "model.golf").state_dict["codes"]
    assert stored.tensors["codes"].scheme == "raw" and sorted(table.tolist()) == list(range(1024))
    assert table.tolist() != list(range(1024))  # the co-occurrence code, not the ids
    block = quant.read_quantized(runs["block"] / "model.golf").tensors
    assert block["head.blocks.0.fc.weight"].scheme == "int6" and block["bit_emb.weight"].shape == (64, 40)


@pytest.mark.parametrize("name", ["ar", "block"])
def test_golf_score_reproduces_the_trainer(runs, name, capsys):
    result = read_result(runs[name])
    assert run_cli(["score", str(runs[name]), "--max-tokens", str(result["tokens"] + 1), "--json",
                    "--no-progress"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["label"] == result["label"] and report["tokens"] == result["tokens"]
    assert report["val_bpb"] == pytest.approx(result["val_bpb"], rel=1e-9)
    if name == "block":
        assert report["val_bpb_stderr"] == pytest.approx(result["val_bpb_stderr"], rel=1e-6)


def test_golf_pack_packs_a_bits_run(runs, tmp_path, capsys):
    rc = run_cli(["pack", str(runs["diffusion"]), "--name", "bits", "--author", "T", "--github-id", "t",
                  "--track", "non_record_16mb", "--out", str(tmp_path), "--artifacts", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert rc == 0 and report["ok"], report.get("problems")
    folder = next((tmp_path / "track_non_record_16mb").iterdir())
    embedded = unpack((folder / "train_gpt.py").read_text()).files()  # lazily imported modules ship too
    assert {"golf/models/bits.py", "golf/models/bit_heads.py", "golf/codes.py"} <= set(embedded)
    assert run_cli(["score", str(folder), "--json", "--no-progress"]) == 0
    rescored = json.loads(capsys.readouterr().out)
    assert rescored["ok"] and all(r["agrees"] for r in rescored["rescored"])
