"""submission.json: golf's canonical schema, and the type check `golf pack --check` applies.

Official records have no fixed schema (55 files, a dozen key sets). golf writes one, documented
in docs/submission-schema.md (generated from FIELDS; a test keeps them equal), which includes
the legacy keys official records use, so tools that read those keep working. Checking a folder
we did not write, only the five keys every official record has are required; any other known
key must still have the right type.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
from typing import Any

SCHEMA_ID = "golf.submission/1"
TRACKS = ("10min_16mb", "non_record_16mb")


@dataclasses.dataclass(frozen=True)
class Field:
    name: str
    kind: str  # str | int | number | date | list[int] | object | number|null | str|null
    required: str  # "all" (every record has it) | "golf" (golf's records) | "no"
    doc: str
    legacy: bool = False  # a key official records already use


FIELDS: tuple[Field, ...] = (
    Field("schema", "str", "golf", f"`{SCHEMA_ID}`: this schema and its version"),
    Field("name", "str", "all", "the submission's name (free text; the folder uses a sanitized slug)", True),
    Field("author", "str", "all", "author's name", True),
    Field("github_id", "str", "all", "author's GitHub handle", True),
    Field("date", "date", "all", "ISO-8601 date (YYYY-MM-DD, or a full timestamp in older records)", True),
    Field("track", "str", "golf", "`10min_16mb` or `non_record_16mb` (the records/track_* folder)", True),
    Field("blurb", "str", "golf", "one paragraph: what this is, and on what hardware", True),
    Field("val_bpb", "number", "all", "mean over seeds of the final round-trip val_bpb (the score)", True),
    Field("val_bpb_std", "number|null", "golf", "sample std over seeds (null with one seed)", True),
    Field("val_loss", "number", "golf", "mean over seeds of the final val_loss, nats per token", True),
    Field("val_loss_std", "number|null", "golf", "sample std over seeds (null with one seed)", True),
    Field("label", "str", "golf", "`exact` (normalized distribution, chain rule) or `bound` (an upper bound)"),
    Field("seeds", "list[int]", "golf", "the seeds, in the order of seed_results", True),
    Field("seed_results", "object", "golf", "per seed (key: the seed as a string): val_loss, val_bpb, label, "
          "artifact_bytes (model bytes), steps, train_time_ms, val_tokens (scored val tokens), log (file name)", True),
    Field("bytes_code", "int", "golf", "bytes of the shipped train_gpt.py (self-contained: all counted code)", True),
    Field("bytes_model_max", "int", "golf", "largest model artifact over the seeds, bytes"),
    Field("bytes_other", "int", "golf", "bytes of any other file the code reads from the folder (0 for golf)"),
    Field("bytes_total", "int", "all", "bytes_code + bytes_model_max + bytes_other; must be ≤ 16,000,000", True),
    Field("hardware", "str", "golf", "what the runs ran on, from the logs", True),
    Field("pytorch_version", "str", "golf", "torch version of the runs", True),
    Field("source_sha256", "str", "golf", "sha256 of the embedded sources, as the train logs record it"),
    Field("golf_version", "str", "golf", "golf version that packed the record"),
    Field("baseline_val_bpb", "number|null", "golf", "mean val_bpb of the baseline (null: none given)"),
    Field("improvement_nats", "number|null", "golf", "baseline val_loss − ours, nats per token (mean)"),
    Field("improvement_bpb", "number|null", "golf", "the same in bits per byte"),
    Field("p_value", "number|null", "golf", "one-sided p of improvement ≤ 0.005 nats (null: no baseline or "
          "too few seeds)", True),
    Field("significance", "str|null", "golf", "the test used and its verdict, in words"),
)
BY_NAME = {f.name: f for f in FIELDS}


def is_kind(kind: str, value: Any) -> bool:
    if kind.endswith("|null"):
        return value is None or is_kind(kind[: -len("|null")], value)
    if kind == "str":
        return isinstance(value, str)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if kind == "date":
        return isinstance(value, str) and _is_iso_date(value)
    if kind == "list[int]":
        return isinstance(value, list) and all(is_kind("int", v) for v in value)
    if kind == "object":
        return isinstance(value, dict)
    raise ValueError(f"unknown field kind {kind!r}")


def _is_iso_date(value: str) -> bool:
    try:
        datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def validate(data: Any) -> list[str]:
    """Every problem with a submission.json's keys and types, as sentences."""
    if not isinstance(data, dict):
        return [f"submission.json must be a JSON object, not {type(data).__name__}"]
    ours = data.get("schema") == SCHEMA_ID
    problems = []
    for field in FIELDS:
        if field.name not in data:
            if field.required == "all" or (ours and field.required == "golf"):
                problems.append(f"submission.json: missing required field {field.name!r} ({field.kind})")
        elif not is_kind(field.kind, data[field.name]):
            problems.append(f"submission.json: field {field.name!r} must be {field.kind}, "
                            f"got {type(data[field.name]).__name__} {data[field.name]!r:.60}")
    if ours and isinstance(data.get("track"), str) and data["track"] not in TRACKS:
        problems.append(f"submission.json: track {data['track']!r} is not one of {', '.join(TRACKS)}")
    return problems


def markdown_table() -> str:
    rows = ["| key | type | required | legacy | meaning |", "|---|---|---|---|---|"]
    for f in FIELDS:
        required = {"all": "always", "golf": "golf records", "no": "no"}[f.required]
        rows.append(f"| `{f.name}` | {f.kind} | {required} | {'yes' if f.legacy else ''} | {f.doc} |")
    return "\n".join(rows) + "\n"
