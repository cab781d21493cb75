"""torch.compile on CPU for the demo model: compile time, and compiled vs eager step time.

Real torchrun runs of train_gpt.py with the `golf demo` model (2 processes × 1 thread, as `golf
demo` runs), a fixed number of steps each, under both dtype policies. The reference in the same
run is the eager run of the same policy. Each compiled run starts with an empty Inductor cache
(its own TORCHINDUCTOR_CACHE_DIR), so its compile time is a cold compile: the first warm-up step's
time minus the mean of the later warm-up steps. Step times come from the trainer's own result.json
(train time excludes the warm-up and validation).

    python bench/compile.py [--steps 30] [--out bench/results/compile.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from golf.demo import DEMO_ENV
from golf.launch import launch_training

COMMON = {**DEMO_ENV, "MAX_WALLCLOCK_SECONDS": "0", "VAL_LOSS_EVERY": "0", "TRAIN_LOG_EVERY": "0",
          "VAL_MAX_TOKENS": "16384", "WARMDOWN_FRAC": "0", "WARMDOWN_ITERS": "0", "OMP_NUM_THREADS": "1"}
NPROC = 2
WARMUP_STEPS = 5


def run(tmp: Path, name: str, env: dict[str, str]) -> dict:
    run_dir = tmp / name
    start = time.perf_counter()
    result = launch_training(run_dir, {**COMMON, **env}, nproc=NPROC)
    wall = time.perf_counter() - start
    warmup = [m["time_ms"] for m in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
              if m["kind"] == "warmup"]
    row = {"run": name, "step_ms": result["train_time_ms"] / result["steps"], "steps": result["steps"],
           "wall_s": round(wall, 1), "pre_quant_val_bpb": result["pre_quant_val_bpb"]}
    if warmup:
        steady = statistics.mean(warmup[1:])
        row.update(warmup_step_ms=warmup, compile_s=round((warmup[0] - steady) / 1000, 1),
                   warmup_steady_step_ms=round(steady, 1))
    print(f"{name:24s} {row['step_ms']:8.1f} ms/step  compile {row.get('compile_s', '-')} s", file=sys.stderr)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per run")
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON here")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for precision in ("cpu", "gpu"):
            base = {"ITERATIONS": str(args.steps), "PRECISION": precision}
            eager = run(tmp, f"eager-{precision}", {**base, "COMPILE": "0"})
            compiled = run(tmp, f"compiled-{precision}", {
                **base, "COMPILE": "1", "WARMUP_STEPS": str(WARMUP_STEPS),
                "TORCHINDUCTOR_CACHE_DIR": str(tmp / f"inductor-{precision}")})
            compiled["speedup_vs_eager"] = round(eager["step_ms"] / compiled["step_ms"], 3)
            rows += [eager, compiled]
    report = {"date": time.strftime("%Y-%m-%d"), "machine": platform.processor() or platform.machine(),
              "torch": torch.__version__, "nproc": NPROC, "threads_per_proc": 1, "steps": args.steps,
              "model": {k: COMMON[k] for k in ("NUM_LAYERS", "MODEL_DIM", "NUM_HEADS", "NUM_KV_HEADS",
                                               "TRAIN_SEQ_LEN", "TRAIN_BATCH_TOKENS")},
              "rows": rows}
    text = json.dumps(report, indent=2) + "\n"
    sys.stdout.write(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
