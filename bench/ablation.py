"""The frontier options one by one at equal wall time on CPU: which help at a size this CPU trains.

Every configuration is a real `torchrun --nproc_per_node=2 train_gpt.py` run on the embedded sample
with the same wall-clock cap (MAX_WALLCLOCK_SECONDS), the same base model and the same seed: the
baseline, each option alone, and the stack of all of them.

The base is the official 9 × 512 shape at sequence length 256, not the 4 × 256 demo shape: the
embedded train split holds only ~480k tokens, and the demo shape streams 14k tokens/s, so in 600 s
it makes ~17 passes over it and memorises it (train loss 2.0 nats, val 5.4: see BENCHMARKS.md).
9 × 512 at ~1.5k tokens/s sees about two epochs in 600 s, where options are compared on learning,
not on memorising. val_bpb is the trainer's final score of what ships (exact, int8 + zstd-22) with
sliding windows (L = 256, stride 64, the eval plan the records use) on the first 65,536 val tokens
(to keep evaluation to minutes; every configuration scores the same targets); the plain-window
roundtrip score is kept beside it. tokens/s is from result.json (validation excluded).

Results are written after every run to --out (JSON), and a run already in the file is skipped, so
a long ablation can be continued by running the same command again. Two cores: run nothing else
beside it, and take each run under `flock /tmp/golf-cpu.lock` (this script does).

    python bench/ablation.py --seconds 600 --out bench/results/ablation.json
    python bench/ablation.py --out bench/results/ablation.json --table     # BENCHMARKS.md's table
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from golf.launch import torchrun_command, train_env

BASE = {"DATA_PATH": "embedded", "TOKENIZER_PATH": "embedded", "NUM_LAYERS": "9", "MODEL_DIM": "512",
        "NUM_HEADS": "8", "NUM_KV_HEADS": "4", "TRAIN_SEQ_LEN": "256", "TRAIN_BATCH_TOKENS": "4096",
        "VAL_MAX_TOKENS": "65536",
        "ITERATIONS": "100000", "WARMDOWN_FRAC": "0.3", "VAL_LOSS_EVERY": "0", "TRAIN_LOG_EVERY": "50",
        "SEED": "1337", "OMP_NUM_THREADS": "1", "EVAL_STRIDE": "64"}
# Each option as the top records set it, scaled from their 11 layers to the 9-layer base where needed.
OPTIONS = {
    "leaky_relu2": {"MLP_LEAKY_SLOPE": "0.5"},
    "xsa": {"XSA": "1"},
    "partial_rope": {"ROPE_DIMS": "16"},
    "ln_scale": {"LN_SCALE": "1"},
    "recurrence": {"RECUR_START": "3", "RECUR_END": "5", "RECUR_LOOPS": "3", "RECUR_START_FRAC": "0.35"},
    "parallel_resid": {"PARALLEL_FROM": "6"},
    "smear_gate": {"SMEAR_GATE": "1"},
    "attn_gate": {"ATTN_GATE": "1"},
    "ema": {"EMA_DECAY": "0.9965"},
    "muoneq_r": {"MUON_ROW_NORM": "1"},
    "polar_express": {"MUON_POLAR_EXPRESS": "1"},
    "min_lr": {"MIN_LR": "0.1"},
    "weight_decay": {"MUON_WEIGHT_DECAY": "0.095", "EMBED_WEIGHT_DECAY": "0.085"},
}
# The baseline and the stack run first: a partial ablation (it is resumable) still has its two ends.
# Last, the baseline with another seed: how far two seeds of one configuration land apart, the noise
# floor every row's difference is read against.
CONFIGS = {"baseline": {}, "stack": {k: v for option in OPTIONS.values() for k, v in option.items()}, **OPTIONS,
           "baseline_seed42": {"SEED": "42"}}


def run(name: str, env: dict[str, str], seconds: float, root: Path) -> dict:
    run_dir = root / name
    cmd = ["flock", "/tmp/golf-cpu.lock", *torchrun_command(2)]
    start = time.time()
    proc = subprocess.run(cmd, env=train_env(run_dir, {**BASE, **env, "MAX_WALLCLOCK_SECONDS": str(seconds)}),
                          capture_output=True, text=True, cwd=root)
    if proc.returncode:
        return {"config": name, "env": env, "error": (proc.stderr or proc.stdout)[-1500:]}
    result = json.loads((run_dir / "result.json").read_text())
    return {"config": name, "env": env, "val_bpb": result["val_bpb"], "label": result["label"],
            "final_eval": result["final_eval"], "roundtrip_val_bpb": result["evals"]["roundtrip"]["val_bpb"],
            "pre_quant_val_bpb": result["pre_quant_val_bpb"], "steps": result["steps"],
            "train_time_ms": result["train_time_ms"],
            "tokens_per_s": round(result["tokens_seen"] / (result["train_time_ms"] / 1000)),
            "bytes_model": result["bytes_model"], "model_params": result["model_params"],
            "wall_s": round(time.time() - start, 1), "date": time.strftime("%Y-%m-%d %H:%M")}


def table(done: dict) -> str:
    """The results as BENCHMARKS.md's markdown table, each row against the baseline of the same file."""
    rows = [r for r in done["rows"] if "error" not in r]
    base = next((r for r in rows if r["config"] == "baseline"), None)
    lines = ["| config | settings | val_bpb (sliding, exact) | vs baseline | roundtrip (plain) | steps | tokens/s | "
             "× baseline |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        settings = (" ".join(f"{k}={v}" for k, v in r["env"].items()) if r["config"] != "stack"
                    else f"all {len(OPTIONS)} options together")
        delta = f"{r['val_bpb'] - base['val_bpb']:+.4f}" if base and r is not base else "—"
        speed = f"{r['tokens_per_s'] / base['tokens_per_s']:.2f}" if base else "—"
        lines.append(f"| {r['config']} | {settings or '—'} | {r['val_bpb']:.4f} | {delta} | {r['roundtrip_val_bpb']:.4f} "
                     f"| {r['steps']} | {r['tokens_per_s']:,} | {speed} |")
    lines += [f"| {r['config']} | failed: {r['error'].splitlines()[-1][:80]} |" for r in done["rows"] if "error" in r]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=600.0, help="training wall clock per run (default 600)")
    parser.add_argument("--out", type=Path, required=True, help="results JSON (read first: done runs are skipped)")
    parser.add_argument("--only", action="append", default=[], help="run just these configs (repeatable)")
    parser.add_argument("--table", action="store_true", help="print --out's results as a markdown table; run nothing")
    args = parser.parse_args()
    done = json.loads(args.out.read_text()) if args.out.is_file() else {"rows": []}
    if args.table:
        print(table(done))
        return 0
    done["machine"] = f"{platform.processor() or platform.machine()}, 2 procs x 1 thread"
    done["seconds"] = args.seconds
    finished = {row["config"] for row in done["rows"] if "error" not in row and row.get("seconds") == args.seconds}
    with tempfile.TemporaryDirectory() as tmp:
        for name, env in CONFIGS.items():
            if name in finished or (args.only and name not in args.only):
                continue
            row = {**run(name, env, args.seconds, Path(tmp)), "seconds": args.seconds}
            done["rows"] = [r for r in done["rows"] if r["config"] != name] + [row]
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(done, indent=1) + "\n")
            print(json.dumps(row), file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
