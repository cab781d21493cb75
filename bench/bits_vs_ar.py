"""val_bpb of MODEL=bits (each head, BitLM blocks) against the AR baseline at equal CPU training time.

Every configuration is a real torchrun run of train_gpt.py on the embedded sample with the demo
shape (`golf demo`: 4×256, seq 256, 8,192 tokens per step, 2 processes × 1 thread) and the same
MAX_WALLCLOCK_SECONDS, scored on the whole embedded val split (148K tokens) after int8 + zstd-22.
Reference in the same run: MODEL=ar. Bounds are scored with EVAL_SAMPLES draws per window and
reported with their standard error; the trainer's seed seeds them (EVAL_SEED = SEED).

    python bench/bits_vs_ar.py --seconds 300 [--only NAME ...] [--out bench/results/bits-vs-ar.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

from golf.demo import DEMO_ENV
from golf.launch import launch_training

CONFIGS = {
    "ar (reference)": {"MODEL": "ar"},
    "bits, bitwise-AR, binary code": {"MODEL": "bits", "HEAD": "ar"},
    "bits, bitwise-AR, cooc code": {"MODEL": "bits", "HEAD": "ar", "CODE": "cooc"},
    "bits, diffusion": {"MODEL": "bits", "HEAD": "diffusion", "EVAL_SAMPLES": "2"},
    "BitLM k=4, diffusion": {"MODEL": "bits", "HEAD": "diffusion", "BLOCK": "4", "EVAL_SAMPLES": "2"},
    "BitLM k=4, bitwise-AR": {"MODEL": "bits", "HEAD": "ar", "BLOCK": "4"},
}
KEEP = ("val_bpb", "label", "val_bpb_stderr", "pre_quant_val_bpb", "steps", "train_time_ms", "tokens_seen",
        "model_params", "bytes_model", "samples", "seed", "tokens", "bytes", "peak_memory_mib")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--only", action="append", default=None, help="a CONFIGS name (repeatable)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, env in CONFIGS.items():
            if args.only and name not in args.only:
                continue
            overrides = {**DEMO_ENV, "OMP_NUM_THREADS": "1", "MAX_WALLCLOCK_SECONDS": str(args.seconds), **env}
            result = launch_training(Path(tmp) / f"run{len(rows)}", overrides, nproc=2)
            rows.append({"config": name, "env": env, **{k: result.get(k) for k in KEEP}})
            print(json.dumps(rows[-1]), flush=True)
            if args.out:  # after each run: a long benchmark keeps what it has measured
                write(args, rows)
    write(args, rows)


def write(args: argparse.Namespace, rows: list[dict]) -> None:
    ref = next((r["val_bpb"] for r in rows if r["config"] == "ar (reference)"), None)
    for row in rows:
        row["vs_ar_bpb"] = None if ref is None else round(row["val_bpb"] - ref, 4)
    result = {"seconds_each": args.seconds, "shape": "demo: 4x256, seq 256, 8192 tokens/step, 2 procs x 1 thread",
              "val": "whole embedded val split", "quant": "int8 + zstd-22", "rows": rows,
              "command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
              "machine": f"{platform.machine()} {platform.processor()}"}
    text = json.dumps(result, indent=2, sort_keys=True) + "\n"
    if args.out:
        args.out.write_text(text)
    else:
        print(text)


if __name__ == "__main__":
    main()
