"""`golf report RUN_DIR… -o report.html`: one offline page comparing runs with each other and with compressors."""

from __future__ import annotations

import argparse
from pathlib import Path

from golf.commands import add_data_args, add_sampling_args, data_paths, emit_json

EPILOG = """examples:
  golf report runs/demo -o report.html
  golf report runs/a runs/b/model.golf -o cmp.html --max-tokens 65536 --docs 3 --tokens 48

The page (one HTML file: inline CSS and SVG, no script, no network) shows
  - a bpb table: each model as `golf score --json` scores it (with its exact/bound label) and each
    golfer (zlib, zstd, lzma, brotli) cold and primed, as `golf golfers --json` scores them on the
    same val tokens (the first run's seq_len and --max-tokens);
  - training curves from each run's metrics.jsonl;
  - the artifact's byte budget by tensor role (golf inspect) plus the run's code bytes;
  - per-byte bits of the first --docs val documents (cut to --doc-bytes) as colour maps, one small
    multiple per model and golfer;
  - sample generations (--prompt, --tokens, --temperature, --top-k, --seed) with tokens/s.
Every number is also embedded as JSON (<script type="application/json" id="golf-report-data">)."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="an offline HTML page: bpb vs compressors, curves, per-byte bits, bytes",
                       description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", type=Path, nargs="+", help="run folders (model.golf, metrics.jsonl, result.json) or artifacts")
    p.add_argument("-o", "--out", type=Path, required=True, help="the .html file to write")
    add_data_args(p)
    p.add_argument("--max-tokens", type=int, default=None, help="score only the first N val tokens")
    p.add_argument("--prime-bytes", type=int, default=None, help="train text priming the golfers (default 262144; 0 = none)")
    p.add_argument("--golfer", action="append", default=None, help="one golfer (repeatable; default: all)")
    p.add_argument("--docs", type=int, default=2, help="val documents shown as per-byte colour maps (default 2)")
    p.add_argument("--doc-bytes", type=int, default=400, help="bytes shown of each document (default 400)")
    add_sampling_args(p, prompt="The", tokens=32, temperature=0.8, top_k=50, what="tokens per sample")
    p.add_argument("--json", action="store_true", help="print one JSON object (what was written) instead of text")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from golf.data import atomic_writer
    from golf.errors import GolfError
    from golf.golfers import DEFAULT_PRIME_BYTES
    from golf.report import build_report
    from golf.report_html import render

    if args.out.is_dir():
        raise GolfError(f"-o {args.out} is a folder; give a file name such as {args.out / 'report.html'}")
    for name, value in (("--docs", args.docs), ("--doc-bytes", args.doc_bytes), ("--tokens", args.tokens)):
        if value < 0:
            raise GolfError(f"{name} must be >= 0, got {value}")
    data, tokenizer = data_paths(args)
    report = build_report(args.runs, data=data, tokenizer=tokenizer, max_tokens=args.max_tokens,
                          prime_bytes=DEFAULT_PRIME_BYTES if args.prime_bytes is None else args.prime_bytes,
                          docs=args.docs, doc_bytes=args.doc_bytes, prompt=args.prompt, gen_tokens=args.tokens,
                          temperature=args.temperature, top_k=args.top_k or None, seed=args.seed,
                          golfers=args.golfer, progress=not args.no_progress and not args.json)
    page = render(report).encode("utf-8")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_writer(args.out) as f:
        f.write(page)
    summary = {"command": "report", "out": str(args.out), "bytes": len(page),
               "models": {m["name"]: m["score"]["val_bpb"] for m in report["models"]},
               "golfers": {g["name"]: g["cold"]["bpb"] for g in report["golfers"]["golfers"]}}
    if args.json:
        emit_json(summary)
    else:
        print(f"wrote {args.out} ({len(page):,} bytes): {len(report['models'])} model(s), "
              f"{len(report['golfers']['golfers'])} golfers, {len(report['docs'])} document(s), "
              f"{len(report['samples'])} sample(s)")
    return 0
