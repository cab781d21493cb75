"""CPU training and scoring throughput of train_gpt.py, demo and official-default shapes.

Each configuration is a real torchrun run of a fixed number of steps; tokens/s comes from the
trainer's own result.json (train time excludes validation). The reference in the same run is
the other process layout: 1 process × 2 threads against 2 processes × 1 thread (DDP, gloo),
reported as a ratio. Scoring throughput is `golf score` on the full embedded val split.

    python bench/train_throughput.py [--out bench/results/throughput.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

from golf import embedded
from golf.launch import launch_training
from golf.score import score_artifact

COMMON = {"DATA_PATH": "embedded", "TOKENIZER_PATH": "embedded", "MAX_WALLCLOCK_SECONDS": "0",
          "VAL_LOSS_EVERY": "0", "TRAIN_LOG_EVERY": "0", "VAL_MAX_TOKENS": "16384", "WARMDOWN_ITERS": "0"}
CONFIGS = {
    "demo (4x256, seq 256)": {"NUM_LAYERS": "4", "MODEL_DIM": "256", "NUM_HEADS": "4", "NUM_KV_HEADS": "2",
                              "TRAIN_SEQ_LEN": "256", "TRAIN_BATCH_TOKENS": "8192", "ITERATIONS": "20"},
    "official default (9x512, seq 1024)": {"TRAIN_SEQ_LEN": "1024", "TRAIN_BATCH_TOKENS": "16384",
                                           "ITERATIONS": "4"},
}
LAYOUTS = {"1 proc x 2 threads": (1, "2"), "2 procs x 1 thread": (2, "1")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None, help="also write the rows as JSON here")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, config in CONFIGS.items():
            per_layout = {}
            for layout, (nproc, threads) in LAYOUTS.items():
                run_dir = Path(tmp) / f"{len(rows)}-{nproc}"
                result = launch_training(run_dir, {**COMMON, **config, "OMP_NUM_THREADS": threads}, nproc=nproc)
                per_layout[layout] = result["tokens_seen"] / (result["train_time_ms"] / 1000)
                print(f"{name:38s} {layout:20s} {per_layout[layout]:9,.0f} train tokens/s", file=sys.stderr)
            start = time.perf_counter()
            scored = score_artifact(run_dir / "model.golf", data=embedded.shards_dir(),
                                    tokenizer=embedded.tokenizer_path(), progress=False)
            rows.append({"config": name, **{f"train_tokens_per_s[{k}]": round(v) for k, v in per_layout.items()},
                         "ddp_over_threads": round(per_layout["2 procs x 1 thread"] / per_layout["1 proc x 2 threads"], 3),
                         "score_tokens_per_s": round(scored["tokens_per_s"]), "score_tokens": scored["tokens"],
                         "score_wall_s": round(time.perf_counter() - start, 2)})
    print(f"machine: {platform.processor() or platform.machine()}, date {time.strftime('%Y-%m-%d')}")
    for row in rows:
        print(json.dumps(row))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
