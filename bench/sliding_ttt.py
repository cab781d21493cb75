"""What sliding windows, score-first TTT and document TTT do to a trained model's bpb, and what they cost.

Scores one artifact (a `golf demo` run's model.golf) on the embedded val split with the one
evaluation path (golf.evalplan.run_plan), under several plans, all on the same scored targets
(the stream is cut to a multiple of twice the longest eval length, so every plan scores the same
tokens and bytes). The reference is the baseline's plan in the same run: non-overlapping windows
of the training length. Each row: bpb, the gain against the reference, seconds and their ratio.
Scores without TTT are timed best of `--repeats` after one warm-up pass (machine load only ever
adds time); a TTT plan is run once.

    python bench/sliding_ttt.py runs/demo18 --out bench/results/sliding_ttt.json
    python bench/sliding_ttt.py runs/demo18 --out bench/results/doc_ttt.json \
        --only "sliding L=256 S=64,docs L=256 S=64,docs+lora L=256 S=64,docs+phases L=256 S=64,docs+lora+phases L=256 S=64"

The document plans (golf.doc_ttt) score each document alone, S targets at a time; "+lora" adds the
per-document adapters (queries, values, head), "+phases" SGD phases of the shared weights over the
first --prefix-docs documents; "+lora:all" adapts what the phased-TTT records adapt, and
"+lora:records" also trains it with their optimizer:

    python bench/sliding_ttt.py runs/demo18 --out bench/results/doc_ttt_targets.json \
        --only "docs+lora L=256 S=64,docs+lora:all L=256 S=64,docs+lora:records L=256 S=64"
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

import quant
from golf import embedded
from golf.bpb import build_byte_table, load_tokenizer
from golf.data import find_shards, load_val_tokens
from golf.evalplan import EvalPlan, headline, run_plan
from golf.score import default_batch_tokens, model_from_artifact
from golf.ttt import TTTConfig

RECORD_TARGETS = "q,k,v,o,mlp"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--stride", type=int, default=64)
    parser.add_argument("--ttt-chunk-tokens", type=int, default=32_768)
    parser.add_argument("--ttt-epochs", type=int, default=3)
    parser.add_argument("--ttt-lr", type=float, default=0.002)
    parser.add_argument("--lora-rank", type=int, default=8, help="document TTT: per-document LoRA rank")
    parser.add_argument("--lora-lr", type=float, default=0.01)
    parser.add_argument("--doc-batch", type=int, default=64)
    parser.add_argument("--prefix-docs", type=int, default=20, help="document TTT: SGD phases over this many documents")
    parser.add_argument("--phases", type=int, default=2)
    parser.add_argument("--only", default="", help="comma-separated plan names to run (default: all)")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs of each plan without TTT (best kept)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    artifact = quant.read_artifact(args.run_dir / "model.golf")
    model = model_from_artifact(artifact.meta, artifact.state_dict)
    train_len = int(artifact.meta["eval"]["seq_len"])
    sp = load_tokenizer(embedded.tokenizer_path())
    table = build_byte_table(sp, model.vocab_size)
    long = 2 * train_len
    tokens = load_val_tokens(find_shards(embedded.shards_dir(), "val"), long)  # a multiple of 2L: same targets
    ttt = TTTConfig(chunk_tokens=args.ttt_chunk_tokens, epochs=args.ttt_epochs, lr=args.ttt_lr)

    def docs(**knobs) -> TTTConfig:  # document TTT; its SGD phases take the stream TTT's epochs and LR
        return TTTConfig(**{**dict(epochs=args.ttt_epochs, lr=args.ttt_lr, mode="docs", lora_rank=args.lora_rank,
                                   lora_lr=args.lora_lr, doc_batch=args.doc_batch), **knobs})
    plans = {
        f"plain L={train_len}": EvalPlan(train_len, train_len),
        f"sliding L={train_len} S={args.stride}": EvalPlan(train_len, args.stride),
        f"plain L={long}": EvalPlan(long, long),
        f"sliding L={long} S={args.stride}": EvalPlan(long, args.stride),
        f"ttt plain L={train_len}": EvalPlan(train_len, train_len, ttt),
        f"ttt sliding L={train_len} S={args.stride}": EvalPlan(train_len, args.stride, ttt),
        f"docs L={train_len} S={args.stride}": EvalPlan(train_len, args.stride, docs(lora_rank=0)),
        f"docs+lora L={train_len} S={args.stride}": EvalPlan(train_len, args.stride, docs()),
        f"docs+phases L={train_len} S={args.stride}": EvalPlan(
            train_len, args.stride, docs(lora_rank=0, prefix_docs=args.prefix_docs, phases=args.phases)),
        f"docs+lora+phases L={train_len} S={args.stride}": EvalPlan(
            train_len, args.stride, docs(prefix_docs=args.prefix_docs, phases=args.phases)),
        # The phased-TTT records' adapter set (q, k, v, attention output, MLP output, head), first with
        # the default optimizer, then with theirs (AdamW without momentum, weight decay 1.0).
        f"docs+lora:all L={train_len} S={args.stride}": EvalPlan(
            train_len, args.stride, docs(lora_targets=RECORD_TARGETS)),
        f"docs+lora:records L={train_len} S={args.stride}": EvalPlan(
            train_len, args.stride, docs(lora_targets=RECORD_TARGETS, lora_beta1=0.0, lora_beta2=0.999, lora_wd=1.0)),
    }
    wanted = set(filter(None, args.only.split(",")))
    device = torch.device("cpu")
    batch_tokens = default_batch_tokens(device)
    rows = []
    run_plan(model, tokens[:4 * train_len + 1], table, plans[f"plain L={train_len}"], batch_windows=4,
             device=device)  # warm-up: first-call costs stay out of the reference
    for name, plan in plans.items():
        if wanted and name not in wanted and name != f"plain L={train_len}":
            continue
        seconds = float("inf")
        for _ in range(1 if plan.ttt is not None else args.repeats):
            start = time.perf_counter()
            outcome = run_plan(model, tokens, table, plan, batch_windows=max(1, batch_tokens // plan.length),
                               device=device)
            seconds = min(seconds, time.perf_counter() - start)
        score = headline(outcome)
        row = {"plan": name, "eval_len": plan.length, "stride": plan.stride, "ttt": plan.ttt and plan.ttt.as_dict(),
               "val_bpb": score.val_bpb, "label": score.label, "tokens": score.tokens, "bytes": score.bytes,
               "seconds": round(seconds, 1)}
        if plan.ttt is not None:
            row.update(ttt_train_seconds=round(outcome.train_seconds, 1), ttt_chunks=outcome.chunks,
                       ttt_updates=outcome.updates, score_first=outcome.guard, documents=outcome.documents,
                       phase_bpb=outcome.phase_bpb)
        rows.append(row)
        ref = rows[0]
        row["gain_vs_plain"] = row["val_bpb"] - ref["val_bpb"]
        row["time_vs_plain"] = round(seconds / ref["seconds"], 2)
        assert (row["tokens"], row["bytes"]) == (ref["tokens"], ref["bytes"]), "plans must share their targets"
        print(f"{name:32s} val_bpb {score.val_bpb:.5f} ({row['gain_vs_plain']:+.5f})  {seconds:7.1f}s "
              f"({row['time_vs_plain']:.2f}x)", flush=True)
    report = {"run_dir": str(args.run_dir), "train_seq_len": train_len, "repeats": args.repeats,
              "tokens": rows[0]["tokens"],
              "bytes": rows[0]["bytes"], "batch_tokens": batch_tokens, "torch_threads": torch.get_num_threads(),
              "machine": platform.processor() or platform.machine(), "torch": torch.__version__, "rows": rows}
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
