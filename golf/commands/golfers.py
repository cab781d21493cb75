"""`golf golfers`: zlib, zstd, lzma and brotli drafted as language models, on the same bytes as `golf score`."""

from __future__ import annotations

import argparse

from golf.commands import add_data_args, add_sampling_args, data_paths, emit_json

EPILOG = """examples:
  golf golfers                                   # bpb of each compressor on the embedded val split
  golf golfers --seq-len 256 --json              # the same val tokens golf score scores at seq_len 256
  golf golfers --prime-bytes 0 --golfer zlib-9   # cold only, one golfer
  golf golfers --prompt "The city" --tokens 24 --temperature 0.7

bpb = compressed bits / the bytes golf score divides by (the credited bytes of the val targets,
whole seq_len windows, --max-tokens as in golf score); documents are joined by a newline that is
compressed but credited 0 bytes, like a model's BOS. cold: the val text compressed alone;
primed: 8*(|C(prime + val)| - |C(prime)|), prime = the first --prime-bytes of the train split's
text. Both are exact code lengths (label exact). --tokens N samples N continuations per golfer by
compressed length (candidates: the 128 most frequent pieces of the prime text; p ~ 2^-bits)."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("golfers", help="compressors as language models: bpb on the val split, samples",
                       description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(p)
    p.add_argument("--seq-len", type=int, default=1024, help="window length golf score uses (whole windows only; default 1024)")
    p.add_argument("--max-tokens", type=int, default=None, help="only the first N val tokens, as golf score --max-tokens")
    p.add_argument("--prime-bytes", type=int, default=None, help="bytes of train text priming the compressors (default 262144; 0 = cold only)")
    p.add_argument("--golfer", action="append", default=None, help="one golfer (repeatable; default: all)")
    add_sampling_args(p, prompt="The", tokens=0, temperature=1.0, top_k=0, what="sampling steps per golfer")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from golf.golfers import DEFAULT_PRIME_BYTES, golfer_samples, score_golfers

    data, tokenizer = data_paths(args)
    prime = DEFAULT_PRIME_BYTES if args.prime_bytes is None else args.prime_bytes
    report = score_golfers(data, tokenizer, seq_len=args.seq_len, max_tokens=args.max_tokens, prime_bytes=prime,
                           names=args.golfer, progress=not args.no_progress and not args.json)
    if args.tokens > 0:
        report["samples"] = golfer_samples(data, tokenizer, args.prompt, args.tokens, prime_bytes=prime,
                                           temperature=args.temperature, top_k=args.top_k or None, seed=args.seed,
                                           names=args.golfer)
    if args.json:
        emit_json(report)
        return 0
    print(f"val text   {report['bytes']:,} credited bytes ({report['targets']:,} targets, seq_len {report['seq_len']}); "
          f"prime {report['prime_bytes']:,} bytes of train text")
    print(f"{'golfer':<10}  {'cold bpb':>9}  {'primed bpb':>10}")
    for row in report["golfers"]:
        primed = f"{row['primed']['bpb']:.4f}" if "primed" in row else "-"
        print(f"{row['name']:<10}  {row['cold']['bpb']:>9.4f}  {primed:>10}   (exact)")
    print(f"rule       {report['rule']}")
    for sample in report.get("samples", []):
        print(f"{sample['name']:<10} {sample['prompt']}|{sample['completion']}")
    return 0
