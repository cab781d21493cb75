"""Bytes: which script is the submission's code, what it counts (as shipped, or as its compressed
wrapper), the model bytes, and every size the logs and submission.json state, against the files.

The script: train_gpt.py, unless the runs that back the score logged the size of another
`train*.py` in the folder (records ship `train_gpt_v5.py`, `train_mamba3_hybrid.py`, or a
baseline train_gpt.py beside the submission's own script); a name other than train_gpt.py is a
warning. The model: the largest artifact in the folder, else the largest model size the runs
behind a mean score logged (every seed's artifact must fit), else any log's.
"""

from __future__ import annotations

import dataclasses
import statistics
from pathlib import Path
from typing import Any

from golf.challenge import CAP_BYTES
from golf.record import codesize, schema
from golf.record.findings import Findings
from golf.record.ledger import Ledger
from golf.record.logs import LogFacts

SCRIPT = "train_gpt.py"


def is_script_name(name: str) -> bool:
    return name.startswith("train") and name.endswith(".py")


def choose_script(scripts: list[Path], backing: list[LogFacts], data: dict, findings: Findings) -> Path | None:
    """The submission's training script among the folder's `train*.py` files."""
    if not scripts:
        findings.error(f"missing required file {SCRIPT}")
        return None
    by_name = {p.name: p for p in scripts}
    wanted = {n for log in backing for n in (log.bytes_code_uncompressed, log.bytes_code) if n is not None}
    claimed = schema.as_number(schema.claimed(data, "bytes_code")[0])
    if claimed is not None:
        wanted.add(round(claimed))
    matching = [p for p in scripts if p.stat().st_size in wanted]
    if SCRIPT in by_name:
        with by_name[SCRIPT].open("rb") as f:  # a launcher shim is short: its head is enough
            names = f.read(1 << 20).decode("utf-8", errors="replace")
        if by_name[SCRIPT] in matching or not matching or any(p.name in names for p in matching):
            return by_name[SCRIPT]  # it ran, or it runs the one that did (a launcher shim)
    chosen = matching[0] if matching else max(scripts, key=lambda p: p.stat().st_size)
    why = ("the script whose size the runs behind the score, or bytes_code, state" if matching else
           "the only training script" if len(scripts) == 1 else
           f"the largest of {', '.join(p.name for p in scripts)}: which one ran is not stated")
    findings.warn(f"the training script is {chosen.name} ({why}), not {SCRIPT}"
                  + (f"; {SCRIPT} in the folder is another script" if SCRIPT in by_name else ""))
    return chosen


@dataclasses.dataclass(frozen=True)
class CodeCount:
    """Code files (the script first, then the files it reads) as shipped and as compressed wrappers."""
    shipped: dict[str, int]
    wrapper: dict[str, int]  # min(shipped, golf's compressed wrapper) for Python files, else shipped
    enforced: str = "shipped"  # which of the two the cap is checked on

    def counted(self) -> dict[str, int]:
        return self.shipped if self.enforced == "shipped" else self.wrapper

    def as_dict(self, script: str | None) -> dict[str, Any]:
        return {"script": script, "bytes_shipped": sum(self.shipped.values()),
                "bytes_wrapper": sum(self.wrapper.values()), "enforced": self.enforced,
                "files": {name: {"shipped": size, "wrapper": self.wrapper[name]} for name, size in self.shipped.items()},
                "rule": "the cap is checked on the code as shipped; a folder over the cap only because it ships "
                        "readable code is accepted, with a warning, when its code as golf's compressed wrapper "
                        "(docstrings dropped, lzma, base85, exec stub) fits"}


def count_code(files: dict[str, tuple[int, str | None]]) -> CodeCount:
    """`files`: name → (bytes shipped, source text for Python files, else None)."""
    shipped = {name: size for name, (size, _) in files.items()}
    wrapper = {}
    for name, (size, text) in files.items():
        wrapped = codesize.wrapper_bytes(text) if text is not None and name.endswith(".py") else None
        wrapper[name] = min(size, wrapped) if wrapped is not None else size
    return CodeCount(shipped, wrapper)


def enforce(code: CodeCount, model: int, model_source: str, findings: Findings) -> tuple[CodeCount, Ledger]:
    """The ledger on the code as shipped, or as wrapper when only that fits (a warning)."""
    counted = dataclasses.replace(code, enforced="shipped")
    shipped_total, wrapper_total = sum(code.shipped.values()) + model, sum(code.wrapper.values()) + model
    if shipped_total > CAP_BYTES and wrapper_total > CAP_BYTES and wrapper_total < shipped_total:
        findings.note(f"with its code as a compressed wrapper ({sum(code.wrapper.values()):,} bytes) the folder "
                      f"would still be {wrapper_total:,} bytes")
    if shipped_total > CAP_BYTES and wrapper_total <= CAP_BYTES:
        counted = dataclasses.replace(code, enforced="wrapper")
        findings.warn(f"as shipped the folder is {shipped_total:,} bytes, {shipped_total - CAP_BYTES:,} over the "
                      f"{CAP_BYTES:,}-byte cap: it fits only counting its code as a compressed wrapper "
                      f"({sum(code.wrapper.values()):,} bytes by golf's count instead of "
                      f"{sum(code.shipped.values()):,}; records log their own minified count)")
    names = list(counted.counted())
    counts = counted.counted()
    ledger = Ledger(counts[names[0]] if names else 0, model, {n: counts[n] for n in names[1:]}, model_source)
    return counted, ledger


def model_bytes(artifacts: list[Path], logs: list[LogFacts], backing: list[LogFacts],
                findings: Findings) -> tuple[int, str]:
    if artifacts:
        return max(p.stat().st_size for p in artifacts), "artifacts"
    for source in (backing if len(backing) > 1 else [], logs):
        exact = [f.bytes_model for f in source if f.bytes_model is not None]
        if exact:
            return max(exact), "logs"
    approx = [f.bytes_model_approx for f in logs if f.bytes_model_approx is not None]
    if approx:
        findings.warn("the logs state the model size in megabytes only: the ledger is ±5,000 bytes")
        return max(approx), "logs (MB)"
    findings.error("no log states the model size and no artifact is in the folder: the cap cannot be checked")
    return 0, "none"


def check_logged_sizes(logs: list[LogFacts], code: CodeCount, scripts: dict[str, int], digest: str | None,
                       findings: Findings) -> None:
    """Each log's size lines against the files, the cap and each other."""
    code_total = sum(code.shipped.values())
    known = {*scripts.values(), code_total, *code.shipped.values()}
    for f in logs:
        if f.bytes_total is not None and f.bytes_total > CAP_BYTES:
            findings.error(f"{f.name}: the run logged a total submission size of {f.bytes_total:,} bytes, "
                           f"over the {CAP_BYTES:,}-byte cap by {f.bytes_total - CAP_BYTES:,}")
        logged = f.bytes_code_uncompressed if f.bytes_code_uncompressed is not None else f.bytes_code
        if logged is not None and (logged != code_total if findings.strict else logged not in known):
            other = " and the files it reads" if len(code.shipped) > 1 else ""
            findings.mismatch(f"{f.name}: logged code size {logged:,} bytes, but the shipped script{other} "
                              f"{'is' if not other else 'are'} {code_total:,}"
                              + ("" if findings.strict else f" (scripts in the folder: "
                                 f"{', '.join(f'{n} {s:,}' for n, s in scripts.items())}): the run used another file"))
        if None not in (f.bytes_total, f.bytes_model, f.bytes_code) and f.bytes_total != f.bytes_model + f.bytes_code:
            findings.mismatch(f"{f.name}: logged total {f.bytes_total:,} ≠ model {f.bytes_model:,} "
                              f"+ code {f.bytes_code:,}")
        if digest and f.source_sha256 and f.source_sha256 != digest:
            findings.error(f"{f.name}: the run's sources (sha256 {f.source_sha256[:16]}) are not the ones "
                           f"train_gpt.py embeds ({digest[:16]})")


def check_size_claims(data: dict, ledger: Ledger, code: CodeCount, logs: list[LogFacts],
                      backing: list[LogFacts], artifacts: list[Path], findings: Findings) -> None:
    """bytes_* claims. golf's records: equal to the ledger. Others: equal to the folder or to a log
    (records claim one seed's total, or the mean over seeds: a note says when it is not the largest)."""
    other = sum(ledger.bytes_other.values())
    exact = {"bytes_total": ledger.bytes_total, "bytes_code": ledger.bytes_code + other,
             "bytes_model_max": ledger.bytes_model_max, "bytes_other": other}
    claims = {key: schema.as_number(schema.claimed(data, key)[0]) for key in exact}
    if findings.strict:
        for key, actual in exact.items():
            if claims[key] is not None and claims[key] != actual and (key != "bytes_model_max" or artifacts):
                findings.error(f"submission.json {key} is {claims[key]:,.0f} but the folder ships {actual:,}")
        return
    totals = [f.bytes_total for f in (backing if len(backing) > 1 else logs) if f.bytes_total is not None]
    shipped = sum(code.shipped.values())
    accepted = {
        "bytes_total": {ledger.bytes_total, shipped + ledger.bytes_model_max, *(f.bytes_total for f in logs),
                        *([round(statistics.fmean(totals))] if totals else [])},
        "bytes_code": {exact["bytes_code"], shipped, *code.shipped.values(),
                       *(n for f in logs for n in (f.bytes_code, f.bytes_code_uncompressed) if n is not None)},
    }
    for key, values in accepted.items():
        claim = claims[key]
        if claim is not None and claim not in values:
            findings.warn(f"submission.json {key} {claim:,.0f} matches neither the folder ({exact[key]:,}) nor any log")
        elif key == "bytes_total" and claim is not None and totals and claim < max(totals):
            findings.note(f"submission.json bytes_total {claim:,.0f} is not the largest total the runs logged "
                          f"({max(totals):,})")


def note_tokenizers(folder: Path, files: list[Path], ledger: Ledger, findings: Findings) -> None:
    """Tokenizer files the code does not name are not counted, as records do not count them: said."""
    for path in files:
        if path.suffix in (".model", ".vocab") and path.name not in ledger.bytes_other:
            findings.note(f"{path.relative_to(folder)} ({path.stat().st_size:,} bytes) ships in the folder and is "
                          f"not counted: no record counts its tokenizer, and the code does not name this file")
