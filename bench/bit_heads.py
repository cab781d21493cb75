"""MODEL=bits vs the softmax LM: step time and memory as V grows, generation speed, artifact bytes.

    python bench/bit_heads.py heads    [--vocabs 1024,8192,32768,131072] [--out bench/results/bit-heads.json]
    python bench/bit_heads.py generate [--out bench/results/bit-generate.json]
    python bench/bit_heads.py artifact [--out bench/results/bit-artifact.json]

heads: one training step (loss forward + backward + Adam step over all parameters) on a fixed
backbone, each (model, V) in a fresh subprocess so that its peak RSS is its own. Reference in the
same run: the softmax model (`ar`, tied embedding = LM head) at the same V.
generate: tokens/s of `generate` at the baseline shape (9×512, V=1024), batch 1, untrained weights
(speed does not depend on them); reference: `ar` with its KV cache, one token per backbone call.
artifact: int8 + zstd-22 bytes of freshly initialised models at the baseline shape and V=8192, per
role (from the artifact itself); reference: `ar` with its tied 8192×512 table.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import quant
from golf import budget, models
from golf.inspect import inspect_artifact

# The fixed backbone of the `heads` benchmark: the demo shape (golf demo), 4 × 1024 tokens per step.
HEADS_BACKBONE = {"num_layers": 4, "model_dim": 256, "num_heads": 4, "num_kv_heads": 2}
HEADS_BATCH, HEADS_SEQ = 4, 256
# name → (variant, config fields)
HEAD_MODELS = {
    "softmax (ar, tied)": ("ar", {}),
    "bitwise-AR": ("bits", {"head": "ar"}),
    "bit-diffusion (4 draws)": ("bits", {"head": "diffusion"}),
    "BitLM k=4 (diffusion)": ("bits", {"head": "diffusion", "block": 4}),
}
GEN_MODELS = {
    "ar + KV cache (reference)": ("ar", {}),
    "bits k=1, bitwise-AR": ("bits", {"head": "ar"}),
    "bits k=1, diffusion 20 steps": ("bits", {"head": "diffusion", "sample_steps": 20}),
    "BitLM k=4, diffusion 20 steps": ("bits", {"head": "diffusion", "block": 4, "sample_steps": 20}),
    "BitLM k=4, diffusion 10 steps": ("bits", {"head": "diffusion", "block": 4, "sample_steps": 10}),
    "BitLM k=4, bitwise-AR": ("bits", {"head": "ar", "block": 4}),
}


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def step_worker(variant: str, config: dict, steps: int) -> dict:
    """Time `steps` training steps after 2 warm-up steps; peak RSS over the whole process."""
    torch.manual_seed(0)
    model = models.build(variant, config)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    batch = torch.randint(0, config["vocab_size"], (HEADS_BATCH, HEADS_SEQ + 1))
    built = rss_mib()
    times = []
    for i in range(steps + 2):
        start = time.perf_counter()
        model.loss(batch).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if i >= 2:
            times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"params": sum(p.numel() for p in model.parameters()), "step_ms": 1000 * sorted(times)[len(times) // 2],
            "peak_rss_mib": round(peak, 1), "rss_after_build_mib": round(built, 1),
            "step_peak_above_build_mib": round(peak - built, 1)}


def bench_heads(vocabs: list[int], steps: int) -> dict:
    rows = []
    for vocab in vocabs:
        for name, (variant, extra) in HEAD_MODELS.items():
            config = {"vocab_size": vocab, **HEADS_BACKBONE, **extra}
            proc = subprocess.run([sys.executable, __file__, "step-worker", json.dumps([variant, config, steps])],
                                  capture_output=True, text=True, check=True)
            row = {"model": name, "vocab": vocab, **json.loads(proc.stdout)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    for row in rows:
        ref = next(r for r in rows if r["vocab"] == row["vocab"] and r["model"] == "softmax (ar, tied)")
        row["step_time_vs_softmax"] = round(row["step_ms"] / ref["step_ms"], 3)
        row["step_memory_vs_softmax"] = round(row["step_peak_above_build_mib"] / ref["step_peak_above_build_mib"], 3)
    return {"backbone": HEADS_BACKBONE, "batch": HEADS_BATCH, "seq_len": HEADS_SEQ, "steps_timed": steps,
            "precision": "fp32", "threads": torch.get_num_threads(), "rows": rows}


def bench_generate(new_tokens: int, repeats: int) -> dict:
    rows = []
    prompt = torch.randint(0, 1024, (1, 16), generator=torch.Generator().manual_seed(0))
    for name, (variant, extra) in GEN_MODELS.items():
        torch.manual_seed(0)
        model = models.build(variant, {"vocab_size": 1024, **extra}).eval()
        model.generate(prompt, 8, generator=torch.Generator().manual_seed(0))  # warm-up
        times = []
        for r in range(repeats):
            start = time.perf_counter()
            model.generate(prompt, new_tokens, generator=torch.Generator().manual_seed(r))
            times.append(time.perf_counter() - start)
        rows.append({"model": name, "tokens_per_s": new_tokens / sorted(times)[len(times) // 2]})
        print(json.dumps(rows[-1]), flush=True)
    ref = rows[0]["tokens_per_s"]
    for row in rows:
        row["vs_ar_kv_cache"] = round(row["tokens_per_s"] / ref, 3)
    k4 = max(r["vs_ar_kv_cache"] for r in rows if r["model"].startswith("BitLM k=4, diffusion"))
    return {"shape": "9x512 (baseline), V=1024", "batch": 1, "prompt": 16, "new_tokens": new_tokens,
            "repeats": repeats, "threads": torch.get_num_threads(), "rows": rows,
            "target": "BitLM k=4 >= 2x ar with KV cache", "best_k4_ratio": k4, "target_hit": k4 >= 2.0}


def bench_artifact(vocab: int) -> dict:
    rows, ratios = [], budget.load_ratios(budget.DEFAULT_RATIOS)
    for name, (variant, extra) in {"ar (tied V×d table)": ("ar", {}), "bits, bitwise-AR": ("bits", {"head": "ar"}),
                                   "bits, diffusion": ("bits", {"head": "diffusion"})}.items():
        torch.manual_seed(0)
        model = models.build(variant, {"vocab_size": vocab, **extra})
        meta = {"model": {"variant": variant, "config": model.config_dict()}}
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.golf"
            quant.write_artifact(path, model.state_dict(), rule="int8", roles=model.checked_roles(), meta=meta,
                                 compressor="zstd-22")
            report = inspect_artifact(path)
        # Fresh weights compress unlike trained ones, so also the estimate from trained models' ratios.
        estimate = budget.estimate_bytes(budget.meta_shapes(variant, model.config), "int8", ratios)
        rows.append({"model": name, "params": sum(p.numel() for p in model.parameters()),
                     "bytes": report["totals"]["bytes"], "by_role": report["by_role"],
                     "trained_ratio_estimate": estimate})
        print(json.dumps({k: rows[-1][k] for k in ("model", "params", "bytes")}), flush=True)
    for row in rows:
        row["bytes_saved_vs_ar"] = rows[0]["bytes"] - row["bytes"]
        row["estimate_saved_vs_ar"] = (rows[0]["trained_ratio_estimate"]["model_bytes"]
                                       - row["trained_ratio_estimate"]["model_bytes"])
    return {"shape": "9x512 (baseline)", "vocab": vocab, "rule": "int8", "compressor": "zstd-22",
            "weights": "fresh initialisation, seed 0 (no trained V=8192 model offline)",
            "estimate": f"golf budget's int8 bytes/param measured on trained models ({ratios.compressor})",
            "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["heads", "generate", "artifact", "step-worker"])
    parser.add_argument("spec", nargs="?", help=argparse.SUPPRESS)  # step-worker's [variant, config, steps]
    parser.add_argument("--vocabs", default="1024,8192,32768,131072")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    # One thread: on a shared 2-core machine two OpenMP threads spin against other work and a step
    # time swings 10x; one thread is slower but steady, and every row (reference included) gets it.
    torch.set_num_threads(1)
    if args.what == "step-worker":
        print(json.dumps(step_worker(*json.loads(args.spec))))
        return
    if args.what == "heads":
        result = bench_heads([int(v) for v in args.vocabs.split(",")], args.steps)
    elif args.what == "generate":
        result = bench_generate(args.new_tokens, args.repeats)
    else:
        result = bench_artifact(8192)
    result.update(command=" ".join(sys.argv), date=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                  machine=f"{platform.machine()} {platform.processor()}", torch=torch.__version__)
    text = json.dumps(result, indent=2, sort_keys=True) + "\n"
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
