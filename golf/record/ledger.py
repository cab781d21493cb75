"""The size ledger: what a record ships, in bytes, counted from the files themselves.

    bytes_total = bytes of train_gpt.py
                + max over seeds of the model artifact's bytes
                + bytes of every other file the code reads from the folder

The max, not the mean: every seed's artifact must fit. "Other files" are found by reading the
code, not running it: sibling modules that train_gpt.py (or a source it embeds) imports, and
folder files whose names appear as string literals in it (a tokenizer, a helper script). The files every record has
(README.md, submission.json, logs, requirements.txt) and the artifacts are not code inputs.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

from golf.challenge import CAP_BYTES
from golf.record.logs import is_log_name

FORMULA = "bytes_total = train_gpt.py + max over seeds of the model bytes + other files the code reads"
RECORD_FILES = ("README.md", "submission.json", "requirements.txt", "train_gpt.py")
ARTIFACT_SUFFIXES = (".golf", ".ptz", ".pt")


@dataclasses.dataclass(frozen=True)
class Ledger:
    bytes_code: int
    bytes_model_max: int
    bytes_other: dict[str, int]
    model_source: str  # where the model bytes came from: "artifacts" (files) or "logs"

    @property
    def bytes_total(self) -> int:
        return self.bytes_code + self.bytes_model_max + sum(self.bytes_other.values())

    @property
    def headroom(self) -> int:
        return CAP_BYTES - self.bytes_total

    def problems(self) -> list[str]:
        if self.headroom >= 0:
            return []
        return [f"bytes_total {self.bytes_total:,} is over the {CAP_BYTES:,}-byte cap by {-self.headroom:,} bytes "
                f"(code {self.bytes_code:,} + model {self.bytes_model_max:,} + other {sum(self.bytes_other.values()):,})"]

    def as_dict(self) -> dict:
        return {"formula": FORMULA, "bytes_code": self.bytes_code, "bytes_model_max": self.bytes_model_max,
                "bytes_other": self.bytes_other, "bytes_total": self.bytes_total, "limit": CAP_BYTES,
                "headroom": self.headroom, "model_source": self.model_source}


def is_artifact_name(name: str) -> bool:
    return name.endswith(ARTIFACT_SUFFIXES)


def other_files(files: list[Path], codes: list[str], script: str = "train_gpt.py") -> dict[str, int]:
    """{name: bytes} of the files that the code imports or names: `files` are the folder's top-level
    regular files (golf.safefiles.record_files: a symlink is never one, so it is never counted);
    `codes` are the script's source and, for a packed file, every embedded source (they run too)."""
    candidates = {p.name: p for p in files if p.name not in (*RECORD_FILES, script)
                  and not is_log_name(p.name) and not is_artifact_name(p.name)}
    named: set[str] = set()
    for code in codes:
        try:
            tree = ast.parse(code)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                named |= {a.name.split(".")[0] + ".py" for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                named.add(node.module.split(".")[0] + ".py")
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and len(node.value) < 256:
                named.add(Path(node.value).name)
    return {name: candidates[name].lstat().st_size for name in sorted(named & set(candidates))}
