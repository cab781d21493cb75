"""Shared fixtures: a tiny trainer configuration and a way to launch train_gpt.py for real."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from golf.cli import build_parser
from golf.launch import torchrun_command, train_env

REPO = Path(__file__).resolve().parents[1]

# Small enough for a few seconds per run on 2 CPU cores, shaped like the baseline.
TINY_TRAIN_ENV = {
    "DATA_PATH": "embedded", "TOKENIZER_PATH": "embedded", "NUM_LAYERS": "2", "MODEL_DIM": "64",
    "NUM_HEADS": "4", "NUM_KV_HEADS": "2", "TRAIN_SEQ_LEN": "64", "TRAIN_BATCH_TOKENS": "2048",
    "VAL_BATCH_SIZE": "16384", "VAL_MAX_TOKENS": "32768", "VAL_LOSS_EVERY": "0", "TRAIN_LOG_EVERY": "1",
    "OMP_NUM_THREADS": "1",
}


def run_trainer(run_dir: Path, env: dict[str, str], nproc: int = 1, timeout: float = 300,
                script: Path = REPO / "train_gpt.py") -> subprocess.CompletedProcess:
    """Run `script` (the repo's train_gpt.py by default) under a real torchrun with `env` on top
    of TINY_TRAIN_ENV."""
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.run(torchrun_command(nproc, script),
                          env=train_env(run_dir, {**TINY_TRAIN_ENV, **env}), capture_output=True, text=True,
                          timeout=timeout, cwd=run_dir.parent)


def run_cli(argv: list[str]) -> int:
    """Parse with the real `golf` parser and run the command, letting GolfError propagate."""
    args = build_parser().parse_args(argv)
    return args.func(args)


def read_result(run_dir: Path) -> dict:
    return json.loads((run_dir / "result.json").read_text())


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """One real 2-process torchrun run on CPU (gloo), shared by the tests that inspect its output."""
    run_dir = tmp_path_factory.mktemp("runs") / "ddp2"
    proc = run_trainer(run_dir, {"ITERATIONS": "6", "MAX_WALLCLOCK_SECONDS": "0"}, nproc=2)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return run_dir


CONTROL_NAMES = ("attn_scale", "mlp_scale", "resid_mix", "q_gain", "skip_weight")


def named_roles(sd: dict) -> dict[str, str]:
    """Roles for the hand-made state dicts of the quantization tests, which have no model to ask:
    by the baseline's tensor names (real models give theirs through `tensor_roles()`)."""
    def role(name: str) -> str:
        if any(p in name for p in CONTROL_NAMES):
            return "control"
        for key, value in (("tok_emb", "emb"), ("lm_head", "head"), (".attn.", "attn"), (".mlp.", "mlp")):
            if key in name:
                return value
        return "other"

    return {name: role(name) for name in sd}
