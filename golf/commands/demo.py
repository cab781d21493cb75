"""`golf demo`: train, quantize, write and score a small model on the embedded data, offline."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from golf.commands import emit_json
from golf.errors import GolfError

EPILOG = """examples:
  golf demo                               # ~3 minutes on 2 CPU cores
  golf demo --seconds 60 --nproc 1        # shorter, single process
  golf demo --env NUM_LAYERS=6 --env MODEL_DIM=384 --json

The run folder keeps train.log, model.golf (the artifact), model_raw.golf (fp32 weights) and
result.json. Score it again any time with `golf score RUN_DIR`."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="train → quantize → artifact → score on the embedded sample",
                       description=__doc__, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=None, help="run folder (default runs/demo-<time>)")
    p.add_argument("--seconds", type=float, default=150.0, help="training wallclock cap (default 150)")
    p.add_argument("--nproc", type=int, default=2, help="torchrun processes (default 2, one per core)")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VAL",
                   help="override a train_gpt.py environment variable (repeatable)")
    p.add_argument("--json", action="store_true", help="print one JSON object; trainer output goes to stderr")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from golf.demo import run_demo

    overrides = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise GolfError(f"--env expects KEY=VAL, got {item!r}")
        overrides[key] = value
    out = args.out or Path("runs") / time.strftime("demo-%Y%m%d-%H%M%S")
    log = sys.stderr if args.json else sys.stdout
    summary = run_demo(out, seconds=args.seconds, nproc=args.nproc, overrides=overrides, log=log,
                       progress=not args.json)
    if args.json:
        emit_json(summary)
    else:
        print(f"\nval_bpb {summary['val_bpb']:.4f} ({summary['label']}; pre-quant {summary['pre_quant_val_bpb']:.4f}) "
              f"on the embedded val split; golf score agrees with the trainer to "
              f"{summary['score_vs_trainer_abs_diff']:.1e}")
        print(f"artifact {summary['bytes_model']:,} B + code {summary['bytes_code']:,} B = "
              f"{summary['bytes_total']:,} B of the {summary['cap']:,} B cap (headroom {summary['headroom']:,} B)")
        print(f"training {summary['steps']} steps in {summary['train_time_ms'] / 1000:.0f} s, "
              f"{summary['train_tokens_per_s']:,.0f} tokens/s on {summary['nproc']} processes; "
              f"scoring {summary['score_tokens_per_s']:,.0f} tokens/s")
        print(f"run folder {summary['run_dir']}")
    return 0 if summary["ok"] else 1
