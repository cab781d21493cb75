"""The `golf` command line: a thin dispatch to the library functions.

    golf demo                      train, quantize, pack and score a small model, offline
    golf score ARTIFACT            exact bpb of an artifact on the val split
    golf inspect ARTIFACT          per-tensor bytes, bytes/param and quantization error
    golf budget                    before a run: params, bytes per rule, fit, largest model, FLOPs
    golf data build|tokenizer|fetch|info   shards, tokenizers and the official download
    golf pack RUN_DIR ... | --check DIR    self-contained record folders; check any record
    golf export ARTIFACT --onnx OUT        ONNX graphs (tied int4 table stored once) + parity check
    golf generate MODEL --prompt TEXT      sample from an artifact or an exported .onnx
    golf golfers                           zlib, zstd, lzma, brotli as language models: bpb, samples
    golf report RUN_DIR ... -o FILE.html   one offline page: bpb, curves, per-byte bits, bytes, samples
    golf toy spamlang                      copy ids never seen in training: vanilla vs bit-embedding models
"""

from __future__ import annotations

import argparse
import sys

from golf import __version__
from golf.commands import budget, data, demo, export, generate, golfers, inspect, pack, report, score, toy
from golf.errors import GolfError, one_line, os_error_line
from quant import QuantError

COMMANDS = (demo, score, inspect, budget, data, pack, export, generate, golfers, report, toy)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="golf", description="Toolkit for the Parameter Golf challenge: train the best language "
        "model whose code + compressed weights fit in 16,000,000 bytes, scored in bits per byte.",
        epilog="Run `golf COMMAND --help` for each command's options and examples.")
    parser.add_argument("--version", action="version", version=f"golf {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args))
    except (GolfError, QuantError) as exc:
        print(f"golf: error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except OSError as exc:  # permission, not a directory, exists, no space: the file system said no
        print(f"golf: error: {one_line(os_error_line(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("golf: interrupted", file=sys.stderr)
        return 130
