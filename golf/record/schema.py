"""submission.json: golf's canonical schema, and the type check `golf pack --check` applies.

Official records have no fixed schema (55 files, a dozen key sets). golf writes one, documented
in docs/submission-schema.md (generated from FIELDS; a test keeps them equal), which includes
the legacy keys official records use, so tools that read those keep working. A folder golf wrote
is held to all of it. For a folder we did not write the check reads what it needs: a missing or
empty author or github_id, or no score (val_bpb, or the `mean_val_bpb` some records use), is an
error; a missing name or date, or a known key of another type (`"p_value": "<0.001"`, a number
written as a string), a warning.
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
    Field("bytes_total", "int", "golf", "bytes_code + bytes_model_max + bytes_other; must be ≤ 16,000,000", True),
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
    Field("compliance", "object", "no", "the record's own compliance statements (e.g. `train_under_600s`: true); "
          "`--check` compares the ones it can verify with the logs"),
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


ALIASES = {"val_bpb": ("mean_val_bpb",), "val_loss": ("mean_val_loss",), "bytes_code": ("code_bytes",)}
IDENTITY = ("author", "github_id")


def claimed(data: dict, key: str) -> tuple[Any, str | None]:
    """(value, the key it was under) of a claim, looking at the aliases records use."""
    for name in (key, *ALIASES.get(key, ())):
        if name in data:
            return data[name], name
    return None, None


def as_number(value: Any) -> float | None:
    """A claim as a number: JSON numbers, or numbers written as strings ("65,000", "1.1502")."""
    if is_kind("number", value):
        return float(value)
    if isinstance(value, str):
        try:
            number = float(value.replace(",", "").strip())
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _foreign_kind_ok(field: Field, value: Any) -> bool:
    if field.name == "seeds":  # records write the seeds as a list, or as a dict keyed by seed
        return isinstance(value, dict) or is_kind("list[int]", value)
    return is_kind(field.kind, value)


def validate(data: Any) -> list[str]:
    """Every problem with a submission.json's keys and types, as sentences (errors and warnings)."""
    errors, warnings = grade(data)
    return errors + warnings


def grade(data: Any) -> tuple[list[str], list[str]]:
    """(errors, warnings) about a submission.json's keys and types, as sentences."""
    if not isinstance(data, dict):
        return [f"submission.json must be a JSON object, not {type(data).__name__}"], []
    ours = data.get("schema") == SCHEMA_ID
    errors: list[str] = []
    warnings: list[str] = []
    for name in IDENTITY:
        if isinstance(data.get(name), str) and not data[name].strip():
            errors.append(f"submission.json: {name} is empty")
        elif name not in data and not ours:
            errors.append(f"submission.json: no {name} (who submitted this?)")
    for field in FIELDS:
        if field.name not in data:
            if ours and field.required in ("all", "golf"):
                errors.append(f"submission.json: missing required field {field.name!r} ({field.kind})")
            elif field.name == "val_bpb" and claimed(data, "val_bpb")[1] is None:
                errors.append("submission.json: no val_bpb (the score)")
            elif field.required == "all" and field.name in ("name", "date"):
                warnings.append(f"submission.json: no {field.name!r}")
            continue
        value = data[field.name]
        if ours and not is_kind(field.kind, value):
            errors.append(f"submission.json: field {field.name!r} must be {field.kind}, "
                          f"got {type(value).__name__} {value!r:.60}")
        elif not ours and not _foreign_kind_ok(field, value):
            severe = field.name in IDENTITY or (field.name == "val_bpb" and as_number(value) is None)
            (errors if severe else warnings).append(
                f"submission.json: {field.name!r} should be {field.kind}, got {type(value).__name__} {value!r:.60}")
    if ours and isinstance(data.get("track"), str) and data["track"] not in TRACKS:
        errors.append(f"submission.json: track {data['track']!r} is not one of {', '.join(TRACKS)}")
    return errors, warnings


def markdown_table() -> str:
    rows = ["| key | type | required | legacy | meaning |", "|---|---|---|---|---|"]
    for f in FIELDS:
        required = {"all": "always", "golf": "golf records", "no": "no"}[f.required]
        rows.append(f"| `{f.name}` | {f.kind} | {required} | {'yes' if f.legacy else ''} | {f.doc} |")
    return "\n".join(rows) + "\n"
