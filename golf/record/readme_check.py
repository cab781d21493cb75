"""README.md against the rest of the folder: it should state the score submission.json claims,
and the scripts its commands run (`torchrun … X.py`, `bash X.sh`) should be in the folder, since
a record must run from inside its folder."""

from __future__ import annotations

import math
import re

from golf.record.findings import Findings

_RUNS = re.compile(r"(?:torchrun\b[^\n`]*?|\bbash\s+)(?P<path>[\w./-]+\.(?:py|sh))\b")
_BPB_FIGURE = re.compile(r"(?i)bpb\b\W{0,6}(\d\.\d{3,8})|(\d\.\d{3,8})\W{0,4}bpb\b")


def _figures(claim: float) -> set[str]:
    return {f"{claim:.4f}", f"{math.floor(claim * 1e4) / 1e4:.4f}", repr(claim)}


def check_readme(readme: str, claim: float | None, files: set[str], findings: Findings) -> None:
    readme = readme.replace("\\_", "_")  # markdown escapes: train\_gpt.py
    if claim is not None and not any(figure in readme for figure in _figures(claim)):
        first = _BPB_FIGURE.search(readme)
        stated = f"; it states {first[1] or first[2]}" if first else ""
        findings.warn(f"README.md does not state the claimed val_bpb {claim:.4f}{stated}")
    missing = {m["path"]: None for m in _RUNS.finditer(readme) if m["path"].rsplit("/", 1)[-1] not in files}
    for path in missing:
        findings.warn(f"README.md runs {path}, which is not in the folder")
