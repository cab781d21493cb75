"""CLI subcommands. Each module offers `add_parser(subparsers)`; the parser's `func(args) -> int` runs it.

Exit codes, for scripts and CI: 0 ok; 1 a check failed (audit mismatch, over the cap); 2 bad
input or usage (the CLI prints one line, never a traceback).
"""

from __future__ import annotations

import json
import sys
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
