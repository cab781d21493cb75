"""CLI subcommands. Each module offers `add_parser(subparsers)`; the parser's `func(args) -> int` runs it.

Exit codes, for scripts and CI: 0 ok; 1 a check failed (audit mismatch, over the cap); 2 bad
input or usage (the CLI prints one line, never a traceback).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from golf.errors import GolfError


def emit_json(obj: dict[str, Any]) -> None:
    """Print exactly one JSON object (sorted keys) on stdout: the `--json` contract.

    NaN and Infinity are not JSON: a result holding one is an error, never printed.
    """
    try:
        text = json.dumps(obj, sort_keys=True, indent=2, allow_nan=False)
    except ValueError as e:
        raise GolfError(f"the result holds a non-finite number, which JSON cannot carry ({e})") from None
    sys.stdout.write(text + "\n")


def add_data_args(p: argparse.ArgumentParser) -> None:
    """--data and --tokenizer, defaulting to the sample shipped inside golf."""
    p.add_argument("--data", default="embedded",
                   help="folder (or glob) of fineweb_{val,train}_*.bin shards; 'embedded' = golf's FineWeb sample")
    p.add_argument("--tokenizer", default="embedded",
                   help="sentencepiece .model of the shards / the artifact (its sha256 is checked against artifacts)")


def data_paths(args: argparse.Namespace) -> tuple[Path, Path]:
    """(data, tokenizer) from `add_data_args`' options, 'embedded' resolved."""
    from golf import embedded

    data = embedded.shards_dir() if args.data == "embedded" else Path(args.data)
    tokenizer = embedded.tokenizer_path() if args.tokenizer == "embedded" else Path(args.tokenizer)
    return data, tokenizer


def add_sampling_args(p: argparse.ArgumentParser, *, prompt: str, tokens: int, temperature: float, top_k: int,
                      what: str = "tokens") -> None:
    """--prompt, --tokens, --temperature, --top-k, --seed: the shared sampling rule's settings."""
    p.add_argument("--prompt", default=prompt, help=f"text to continue (default {prompt!r})")
    p.add_argument("--tokens", type=int, default=tokens, help=f"{what} to generate (default {tokens}; 0 = none)")
    p.add_argument("--temperature", type=float, default=temperature,
                   help=f"sampling temperature; 0 = greedy (default {temperature:g})")
    p.add_argument("--top-k", type=int, default=top_k, help=f"sample among the k most likely (default {top_k}; 0 = all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling generator (default 0)")
