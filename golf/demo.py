"""`golf demo`: the whole pipeline on the embedded FineWeb sample, offline, in a few minutes.

It launches a real `torchrun` run of train_gpt.py (the same trainer a record run uses, with a
small model and a wallclock cap), which trains, quantizes, writes the artifact and scores its
round trip; then it re-scores the artifact from its bytes alone with `golf score`'s code path
and checks both numbers agree.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, TextIO

from golf import embedded
from golf.challenge import CAP_BYTES
from golf.errors import GolfError
from golf.launch import launch_training
from golf.score import score_artifact


# A small model in the baseline's shape: big enough to learn real structure from 0.5M tokens,
# small enough that 2 CPU cores take ~1 s per 8K-token step.
DEMO_ENV: dict[str, str] = {
    "DATA_PATH": "embedded", "TOKENIZER_PATH": "embedded", "MODEL": "ar",
    "NUM_LAYERS": "4", "MODEL_DIM": "256", "NUM_HEADS": "4", "NUM_KV_HEADS": "2", "MLP_MULT": "2",
    "TRAIN_SEQ_LEN": "256", "TRAIN_BATCH_TOKENS": "8192", "VAL_BATCH_SIZE": "65536",
    "ITERATIONS": "100000", "WARMDOWN_FRAC": "0.3", "VAL_LOSS_EVERY": "0", "TRAIN_LOG_EVERY": "25",
    "SEED": "1337",
}


def run_demo(out_dir: Path, *, seconds: float, nproc: int, overrides: dict[str, str],
             log: TextIO, progress: bool = True) -> dict[str, Any]:
    """Train → quantize → artifact → score; returns the summary dict."""
    if out_dir.exists() and any(out_dir.iterdir()):
        raise GolfError(f"{out_dir} already exists and is not empty; pass another --out")
    env = {**DEMO_ENV, "MAX_WALLCLOCK_SECONDS": str(seconds), **overrides}
    # Split the cores between the ranks: more threads than cores would only contend.
    if "OMP_NUM_THREADS" not in env and "OMP_NUM_THREADS" not in os.environ:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nproc))
    print(f"$ {' '.join(f'{k}={v}' for k, v in sorted(env.items()))} "
          f"torchrun --standalone --nproc_per_node={nproc} train_gpt.py", file=log, flush=True)
    start = time.perf_counter()
    result = launch_training(out_dir, env, nproc=nproc, log=log)
    wall = time.perf_counter() - start
    scored = score_artifact(out_dir / result["artifact"], data=embedded.shards_dir(),
                            tokenizer=embedded.tokenizer_path(), progress=progress)
    gap = abs(scored["val_bpb"] - result["val_bpb"])
    return {
        "command": "demo", "run_dir": str(out_dir), "ok": gap <= 1e-6,
        "val_bpb": scored["val_bpb"], "val_loss": scored["val_loss"], "label": scored["label"],
        "pre_quant_val_bpb": result["pre_quant_val_bpb"], "trainer_val_bpb": result["val_bpb"],
        "score_vs_trainer_abs_diff": gap, "bytes_model": result["bytes_model"],
        "bytes_code": result["bytes_code"], "bytes_total": result["bytes_total"],
        "cap": CAP_BYTES, "headroom": CAP_BYTES - result["bytes_total"],
        "steps": result["steps"], "train_time_ms": result["train_time_ms"],
        "train_tokens_per_s": result["tokens_seen"] / max(result["train_time_ms"] / 1000, 1e-9),
        "score_tokens_per_s": scored["tokens_per_s"], "wall_seconds": round(wall, 1),
        "nproc": nproc}
