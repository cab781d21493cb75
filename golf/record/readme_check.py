"""README.md against the rest of the folder: it should state the score submission.json claims,
the scripts its commands run (`torchrun … X.py`, `bash X.sh`) should be in the folder, since
a record must run from inside its folder, and a size it gives twice ("N bytes (X MB)") should be
one size, and its figures of runs (golf.record.readme_logs) should be what the logs show."""

from __future__ import annotations

import math
import re

from golf.record.findings import Findings
from golf.record.logs import LogFacts
from golf.record.readme_logs import readme_run_figures

_RUNS = re.compile(r"(?:torchrun\b[^\n`]*?|\bbash\s+)(?P<path>[\w./-]+\.(?:py|sh))\b")
_BPB_FIGURE = re.compile(r"(?i)bpb\b\W{0,6}(\d\.\d{3,8})|(\d\.\d{3,8})\W{0,4}bpb\b")
_SUBMITTING_AT = re.compile(r"(?i)\bsubmitting at\W{0,3}(?:val_)?bpb\W{0,3}=?\W{0,3}(?P<figure>\d\.(?P<decimals>\d{2,8}))")
_BYTES = r"(?P<bytes>\d{1,3}(?:,\d{3}){2,}|\d{7,})\s*bytes"
_MEGA = r"~?(?P<mb>\d+(?:\.(?P<decimals>\d+))?)\s*(?P<unit>MB|MiB)"
_SIZE_PAIRS = (re.compile(rf"{_BYTES}\s*\(\s*{_MEGA}\s*\)"), re.compile(rf"{_MEGA}\s*\(\s*{_BYTES}\s*\)"))


def _figures(claim: float) -> set[str]:
    return {f"{claim:.4f}", f"{math.floor(claim * 1e4) / 1e4:.4f}", repr(claim)}


def _inconsistent_sizes(readme: str) -> list[str]:
    """Each "N bytes (X MB)" (or "X MB (N bytes)") whose two figures are not one size at X's precision."""
    found = []
    for m in (m for pattern in _SIZE_PAIRS for m in pattern.finditer(readme)):
        n = int(m["bytes"].replace(",", ""))
        mega = float(m["mb"])
        unit = 1 << 20 if m["unit"] == "MiB" else 1_000_000
        half_ulp = 0.5 * 10 ** -len(m["decimals"] or "")
        if abs(n / unit - mega) > half_ulp + 1e-9:
            found.append(f"README.md gives one size as {m[0]!r}: {n:,} bytes is {n / unit:.2f} {m['unit']}")
    return found


def check_readme(readme: str, claim: float | None, files: set[str], logs: list[LogFacts], findings: Findings) -> None:
    readme = readme.replace("\\_", "_")  # markdown escapes: train\_gpt.py
    if claim is not None and not any(figure in readme for figure in _figures(claim)):
        first = _BPB_FIGURE.search(readme)
        stated = f"; it states {first[1] or first[2]}" if first else ""
        findings.warn(f"README.md does not state the claimed val_bpb {claim:.4f}{stated}")
    for m in _SUBMITTING_AT.finditer(readme):
        if claim is not None and f"{claim:.{len(m['decimals'])}f}" != f"{m['figure']}":
            findings.warn(f"README.md says {m[0]!r}, but submission.json claims val_bpb {claim}")
    missing = {m["path"]: None for m in _RUNS.finditer(readme) if m["path"].rsplit("/", 1)[-1] not in files}
    for path in missing:
        findings.warn(f"README.md runs {path}, which is not in the folder")
    for problem in _inconsistent_sizes(readme) + readme_run_figures(readme, logs):
        findings.warn(problem)
