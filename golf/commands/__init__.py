"""CLI subcommands. Each module offers `add_parser(subparsers)`; the parser's `func(args) -> int` runs it.

Exit codes, for scripts and CI: 0 ok; 1 a check failed (audit mismatch, over the cap); 2 bad
input or usage (the CLI prints one line, never a traceback).
"""

from __future__ import annotations

import json
import sys
from typing import Any


def emit_json(obj: dict[str, Any]) -> None:
    """Print exactly one JSON object (sorted keys) on stdout: the `--json` contract."""
    sys.stdout.write(json.dumps(obj, sort_keys=True, indent=2) + "\n")
