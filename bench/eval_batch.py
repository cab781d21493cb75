"""Scoring speed against the eval batch size, to choose golf.score.DEFAULT_BATCH_TOKENS per device.

Times `golf.score.evaluate` (the one scoring path) on the embedded val split for several batch
sizes, interleaved over `--repeats` rounds so machine load hits every size alike; the reference
is the old default, 65,536 tokens per forward pass, measured in the same run. Two model shapes:
the demo's (4×256, seq 256) and the official baseline's (9×512, seq 1024; random weights, which
score as fast as trained ones).

    python bench/eval_batch.py --out bench/results/eval_batch.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from golf import embedded, models
from golf.bpb import build_byte_table, load_tokenizer
from golf.data import find_shards, load_val_tokens
from golf.score import evaluate, resolve_device
from golf.sliding import sliding_windows


SHAPES = {
    "demo 4x256 seq256": ({"NUM_LAYERS": "4", "MODEL_DIM": "256", "NUM_HEADS": "4", "NUM_KV_HEADS": "2"}, 256),
    "baseline 9x512 seq1024": ({}, 1024),
}
BATCHES = (1_024, 2_048, 4_096, 8_192, 16_384, 32_768, 65_536)
REFERENCE = 65_536


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=65_536, help="val tokens scored per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    device = resolve_device(args.device)
    sp = load_tokenizer(embedded.tokenizer_path())
    rows = []
    for name, (env, seq_len) in SHAPES.items():
        torch.manual_seed(0)
        model = models.build("ar", models.config_from_env("ar", env)).to(device)
        table = build_byte_table(sp, model.vocab_size)
        tokens = load_val_tokens(find_shards(embedded.shards_dir(), "val"), seq_len, max_tokens=args.tokens + 1)
        windows = sliding_windows(tokens, seq_len)
        best: dict[int, float] = {}
        for _ in range(args.repeats):
            for batch in BATCHES:
                start = time.perf_counter()
                result = evaluate(model, windows, table, batch_windows=max(1, batch // seq_len), device=device)
                rate = result.tokens / (time.perf_counter() - start)
                best[batch] = max(best.get(batch, 0.0), rate)
        for batch in BATCHES:
            rows.append({"shape": name, "batch_tokens": batch, "tokens_per_s": round(best[batch]),
                         "vs_65536": round(best[batch] / best[REFERENCE], 3)})
            print(f"{name:24s} batch {batch:6d}: {best[batch]:9,.0f} tokens/s  ({best[batch] / best[REFERENCE]:.2f}x)")
    report = {"device": device.type, "torch_threads": torch.get_num_threads(), "tokens": args.tokens,
              "repeats": args.repeats, "machine": platform.processor() or platform.machine(),
              "torch": torch.__version__, "rows": rows}
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
