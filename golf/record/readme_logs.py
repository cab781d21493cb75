"""README.md's per-run figures against the logs that should back them.

Records restate their runs in the README: a per-seed table (steps, artifact size), a size in
prose ("Artifact: ~15.4 MB"), the largest artifact ("max: 15,995,705 bytes"), which log ran on
which hardware ("train_v0.txt is on 2xH100").
Each such figure must be what some shipped log shows, at the precision it is written in: an
exact figure exactly, "~8,300" to within half its last non-zero digit (±50), "15.94 MB" to
within half its last decimal. A size may be the model's bytes or the total (records use both
for "artifact"), in MB or MiB. Figures no log can back are warnings: the README describes runs
the folder does not hold (or misquotes them), which misleads a reader but breaks no rule.

Only figures tied to a run are compared: a table row keyed by a seed that exactly one set of
logs carries; a prose size introduced by "artifact"; a byte count right after "max"/"largest",
which must be the largest total or model size logged; a log file named next to "N×H100". Free
prose ("~10,000 steps") is not parsed: no rule for it was found that stays silent on clean folders.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from golf.record.logs import LogFacts

_SEPARATOR = re.compile(r"^\s*\|[\s:|-]+\|\s*$")
_NUMBER = re.compile(r"^(?P<approx>~)?\s*(?P<digits>\d{1,3}(?:,\d{3})+|\d+)(?:\.(?P<decimals>\d+))?"
                     r"\s*(?P<unit>MB|MiB|bytes|B)?$")
_PROSE_SIZE = re.compile(r"(?i)\bartifact(?: size)?\s*[:=]\s*(?P<figure>~?\d+(?:\.\d+)?\s*MB)\b")
_LARGEST = re.compile(r"(?i)\b(?:max(?:imum)?|largest)\b\W{0,3}(?P<n>\d{1,3}(?:,\d{3}){2,}|\d{7,})")
_LOG_HARDWARE = re.compile(r"`?(?P<log>[\w.-]+\.(?:txt|log))`?[^\n.;]{0,30}?\b(?P<n>\d+)\s*[x×]\s*H100")


def _cells(line: str) -> list[str]:
    return [cell.strip().strip("*").strip() for cell in line.strip().strip("|").split("|")]


def tables(readme: str) -> Iterable[tuple[list[str], list[list[str]]]]:
    """(header, rows) of every markdown table, cells without bold markers, header lower-cased."""
    lines = readme.splitlines()
    for i, line in enumerate(lines[:-1]):
        if line.lstrip().startswith("|") and _SEPARATOR.match(lines[i + 1]):
            rows = []
            for row in lines[i + 2:]:
                if not row.lstrip().startswith("|"):
                    break
                rows.append(_cells(row))
            yield [cell.lower() for cell in _cells(line)], rows


def backed(figure: str, values: Iterable[int | None], *, size: bool) -> bool | None:
    """Whether some value matches `figure` at its precision (None: the figure is not a number of this kind)."""
    m = _NUMBER.match(figure.strip())
    if not m:
        return None
    known = [v for v in values if v is not None]
    number = float(m["digits"].replace(",", "") + (f".{m['decimals']}" if m["decimals"] else ""))
    if m["unit"] in ("MB", "MiB"):
        if not size:
            return None
        units = [1 << 20] if m["unit"] == "MiB" else [1_000_000, 1 << 20]  # "MB" is written for both
        half = 0.5 * 10 ** -len(m["decimals"] or "")
        return any(abs(v / unit - number) <= half + 1e-9 for v in known for unit in units)
    if m["decimals"] or (size and number < 100_000):
        return None  # a decimal without a unit, or too small to be an artifact's bytes
    digits = m["digits"].replace(",", "")
    half = 0.5 * 10 ** (len(digits) - len(digits.rstrip("0"))) if m["approx"] else 0
    return any(abs(v - number) <= half for v in known)


def _column(header: list[str], *, size: bool) -> int | None:
    for i, name in enumerate(header):
        if size and re.search(r"artifact|size|bytes", name) and not re.search(r"code|time|param", name):
            return i
        if not size and re.fullmatch(r"(train(ing)? )?steps?", name):
            return i
    return None


def readme_run_figures(readme: str, logs: list[LogFacts]) -> list[str]:
    """Warnings: README figures of runs that no shipped log backs."""
    by_seed: dict[int, list[LogFacts]] = {}
    for log in logs:
        if log.seed is not None and log.trained:
            by_seed.setdefault(log.seed, []).append(log)
    found = []
    for header, rows in tables(readme):
        seed_col = next((i for i, name in enumerate(header) if name == "seed"), None)
        if seed_col is None:
            continue
        for size, what in ((False, "steps"), (True, "artifact size")):
            col = _column(header, size=size)
            if col is None:
                continue
            for row in rows:
                if len(row) <= max(seed_col, col) or not row[seed_col].isdigit():
                    continue
                runs = by_seed.get(int(row[seed_col]), [])
                values = {log.name: [v for v in ((log.bytes_total, log.bytes_model) if size else (log.steps,))
                                     if v is not None] for log in runs}
                if runs and backed(row[col], [v for vs in values.values() for v in vs], size=size) is False:
                    shown = "; ".join(f"{name} {' / '.join(f'{v:,}' for v in vs)}" for name, vs in values.items())
                    found.append(f"README.md's table gives seed {row[seed_col]}'s {what} as {row[col]!r}; "
                                 f"the logs show {shown}")
    sizes = [v for log in logs if log.trained for v in (log.bytes_total, log.bytes_model)]
    for m in _PROSE_SIZE.finditer(readme):
        if sizes and backed(m["figure"], sizes, size=True) is False:
            found.append(f"README.md says {m[0]!r}; no log's artifact is that size "
                         f"(they log {min(s for s in sizes if s):,}..{max(s for s in sizes if s):,} bytes)")
    totals = [log.bytes_total for log in logs if log.trained and log.bytes_total]
    models = [log.bytes_model for log in logs if log.trained and log.bytes_model]
    for m in _LARGEST.finditer(readme):
        n = int(m["n"].replace(",", ""))
        if totals and n not in (max(totals), max(models, default=0)):
            found.append(f"README.md gives the largest artifact as {n:,} bytes ({m[0]!r}); the largest the logs "
                         f"show is {max(totals):,} (total)" + (f" / {max(models):,} (model)" if models else ""))
    named = {log.name.rsplit("/", 1)[-1]: log for log in logs}
    for m in _LOG_HARDWARE.finditer(readme):
        log = named.get(m["log"])
        if log is not None and log.world_sizes and int(m["n"]) not in log.world_sizes:
            found.append(f"README.md says {m['log']} ran on {m['n']}×H100; it logs world_size "
                         f"{', '.join(map(str, log.world_sizes))}")
    return found
