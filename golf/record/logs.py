"""Facts from a train log, read as text: golf's logs and the official baseline's format alike.

A record ships its logs, not result.json, so checking a record means reading logs. Lines are
matched at line start only: official logs begin with the script's own source, whose f-strings
contain the same words indented. The last match wins, as later lines supersede earlier ones
(the official log prints the raw model size, then the compressed one that counts).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

MAX_LOG_BYTES = 64 << 20  # a log larger than this is not a train log; refuse rather than read it
_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|inf"
_FINAL = re.compile(rf"^(?P<label>[A-Za-z][A-Za-z0-9_]*) val_loss:(?P<loss>{_NUM}) val_bpb:(?P<bpb>{_NUM})", re.M)
_MODEL = re.compile(r"^Serialized model[^:\n]*: (\d+) bytes", re.M)
_CODE = re.compile(r"^Code size[^:\n]*: (\d+)(?: bytes)?", re.M)
_TOTAL = re.compile(r"^Total submission size[^:\n]*: (\d+)(?: bytes)?", re.M)
_SEED = re.compile(r"(?:^|\s)seed:(\d+)\b", re.M)
_STEP = re.compile(r"^step:(\d+)/\d+", re.M)
_TRAIN_TIME = re.compile(r"^step:\d+/\d+ .*?train_time:(\d+)ms(?: step_avg:([\d.]+)ms)?", re.M)
_SOURCE = re.compile(r"^source_sha256:([0-9a-f]{64})\b", re.M)
_HARDWARE = re.compile(r"^hardware (.+)$", re.M)
_VAL_TOKENS = re.compile(r"^val_loader:.*?tokens:(\d+)", re.M)


@dataclasses.dataclass
class LogFacts:
    path: Path
    final_label: str | None = None  # the line the score was read from, e.g. final_int8_zlib_roundtrip_exact
    val_loss: float | None = None
    val_bpb: float | None = None
    bytes_model: int | None = None
    bytes_code: int | None = None
    bytes_total: int | None = None
    seed: int | None = None
    steps: int | None = None
    train_time_ms: int | None = None
    step_avg_ms: float | None = None
    source_sha256: str | None = None
    hardware: str | None = None
    val_tokens: int | None = None


def _last(pattern: re.Pattern, text: str) -> Any:  # a str, or a tuple of groups, or None
    found = pattern.findall(text)
    return found[-1] if found else None


def _int(value: str | None) -> int | None:
    return int(value) if value is not None else None


def final_score(text: str) -> tuple[str, float, float] | None:
    """(label, val_loss, val_bpb) of the final score: the last `*_exact` line (full precision),
    else the last `label val_loss:… val_bpb:…` line that is not a per-step line."""
    lines = [(m["label"], float(m["loss"]), float(m["bpb"])) for m in _FINAL.finditer(text)]
    exact = [line for line in lines if line[0].endswith("_exact")]
    return (exact or lines or [None])[-1]


def parse_log(path: Path) -> LogFacts:
    if path.stat().st_size > MAX_LOG_BYTES:
        raise ValueError(f"{path.name} is {path.stat().st_size} bytes, larger than any train log")
    text = path.read_text(encoding="utf-8", errors="replace")
    facts = LogFacts(path)
    score = final_score(text)
    if score is not None:
        facts.final_label, facts.val_loss, facts.val_bpb = score
    facts.bytes_model = _int(_last(_MODEL, text))
    facts.bytes_code = _int(_last(_CODE, text))
    facts.bytes_total = _int(_last(_TOTAL, text))
    seed = _SEED.search(text)
    facts.seed = int(seed[1]) if seed else None
    facts.steps = _int(_last(_STEP, text))
    timing = _last(_TRAIN_TIME, text)
    if timing is not None:
        facts.train_time_ms, facts.step_avg_ms = int(timing[0]), float(timing[1]) if timing[1] else None
    facts.source_sha256 = _last(_SOURCE, text)
    facts.hardware = _last(_HARDWARE, text)
    facts.val_tokens = _int(_last(_VAL_TOKENS, text))
    return facts


def is_log_name(name: str) -> bool:
    """Train logs as records name them: *.log, or *.txt other than requirements.txt."""
    return name.endswith(".log") or (name.endswith(".txt") and name != "requirements.txt")
