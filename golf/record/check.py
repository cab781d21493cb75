"""`golf pack --check`: validate a record folder, ours or anyone's: errors, warnings, notes.

Nothing in the folder is executed or imported: the training script is compiled (not run) in a
child process under a memory limit, a packed file's embedded sources are decoded as data and
compiled the same way, logs are read as text, artifacts are only measured, nothing is unpickled,
and symlinks, FIFOs and devices are reported rather than followed, read or counted
(golf.safefiles). Sizes are recomputed from the files (golf.record.ledger, .sizes, .codesize); the
claims in submission.json are checked against the logs (.claims), the logs against the record
track's rules (.rules), README.md against both (.readme_check). The grades: golf.record.findings.

Folders as records really are: submission.json or one `submission_*.json`; train_gpt.py or
another `train*.py`; logs (*.log, *.txt) at the top or one folder down, identical copies counted
once; every log dialect golf.record.logs reads.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from golf.challenge import CAP_BYTES
from golf.errors import GolfError
from golf.limits import MAX_RECORD_JSON_BYTES, MAX_SCRIPT_BYTES
from golf.record import claims, rules, schema, sizes
from golf.record.findings import Findings
from golf.record.ledger import is_artifact_name, other_files
from golf.record.logs import LogFacts, Score, is_log_name, parse_log
from golf.record.readme_check import check_readme
from golf.record.rules import RECORD_TRACK
from golf.record.sizes import is_script_name
from golf.safefiles import compile_isolated, read_bytes, read_json, read_text, record_files
from golf.selfcontained import Sources, unpack

BPB_TOLERANCE = 5e-5  # `golf score`: a re-scored artifact agrees with its claim to 4 decimals
SEED_ARTIFACT = re.compile(r"seed[_-]?(\d+)")


def _read_json(path: Path) -> tuple[Any, list[str]]:
    try:
        return read_json(path, MAX_RECORD_JSON_BYTES, path.name), []
    except GolfError as e:
        return None, [str(e)]


def _check_code(path: Path) -> tuple[list[str], Sources | None, list[str]]:
    """(the sources that compiled, the embedded sources if packed, problems). Compiles in a
    memory-limited child and never executes: only a source that compiled there is parsed in-process."""
    try:
        code = read_text(path, MAX_SCRIPT_BYTES, path.name)
    except GolfError as e:
        return [], None, [f"{e}; not compiling it"]
    problem = compile_isolated({path.name: code})[path.name]
    if problem:
        return [], None, [f"{path.name} does not compile: {problem}"]
    try:
        sources = unpack(code)
    except ValueError as e:
        return [code], None, [f"{path.name}: {e}"]
    if sources is None:
        return [code], None, []
    compiled = compile_isolated({f"{path.name}:{name}": text for name, text in sources.files().items()})
    parsed = [code, *(text for name, text in sources.files().items() if not compiled[f"{path.name}:{name}"])]
    return parsed, sources, [f"{name.replace(':', ': embedded ', 1)} does not compile: {problem}"
                             for name, problem in compiled.items() if problem]


def _layout(folder: Path, files: list[Path], findings: Findings) -> tuple[Path | None, list[Path], list[Path]]:
    """(the submission JSON, the training scripts, the logs) of the folder; empty files are errors."""
    for path in files:
        if path.stat().st_size == 0:
            findings.error(f"{path.relative_to(folder)} is empty (0 bytes)")
    top = {p.name: p for p in files if p.parent == folder}
    if "README.md" not in top:
        findings.error("missing required file README.md")
    submission = top.get("submission.json")
    if submission is None:
        others = sorted(n for n in top if n.startswith("submission") and n.endswith(".json"))
        if len(others) == 1:
            submission = top[others[0]]
            findings.warn(f"submission file is named {others[0]}, not submission.json")
        else:
            found = f" (found {', '.join(others)})" if others else ""
            findings.error(f"missing required file submission.json{found}")
    logs = [p for p in files if is_log_name(p.name) and p.stat().st_size > 0]
    if not logs:
        findings.error("missing train log(s): no *.log or *.txt file")
    return submission, [p for n, p in sorted(top.items()) if is_script_name(n)], logs


def _read_logs(folder: Path, paths: list[Path], findings: Findings) -> list[LogFacts]:
    """Parsed logs, identical copies counted once."""
    logs: dict[str, LogFacts] = {}
    for path in paths:
        name = path.relative_to(folder).as_posix()
        try:
            facts = parse_log(path, name)
        except (OSError, ValueError) as e:
            findings.error(f"{name}: unreadable log ({e})")
            continue
        if facts.digest in logs:
            findings.note(f"{name} is an identical copy of {logs[facts.digest].name}: counted once")
        else:
            logs[facts.digest] = facts
    for facts in logs.values():
        for score in facts.scores:  # a diverged run: its number is no score, whatever a claim says
            if not (math.isfinite(score.val_loss) and math.isfinite(score.val_bpb)):
                findings.error(f"{facts.name}: {score.label} logs val_loss {score.val_loss} val_bpb {score.val_bpb}, "
                               "not a finite number")
            if score.eval_ms == 0:  # no evaluation takes 0 ms: the clock that proves the eval limit was not read
                findings.warn(f"{facts.name}: {score.label} logs eval_time:0ms: its evaluation was not timed")
        if facts.trained and not facts.scores:
            findings.warn(f"{facts.name}: a training log with no final score line (the run did not finish?)")
    return list(logs.values())


def _track(folder: Path, data: dict, findings: Findings) -> str | None:
    parent = folder.parent.name.removeprefix("track_") if folder.parent.name.startswith("track_") else None
    stated = data.get("track") if isinstance(data.get("track"), str) else None
    claimed = None if stated is None else "non_record_16mb" if "non" in stated.lower() else RECORD_TRACK
    if parent and claimed and parent != claimed:
        findings.warn(f"submission.json says track {stated!r} but the folder is in track_{parent}")
    name = data.get("name") if isinstance(data.get("name"), str) else ""
    if (parent or claimed) == RECORD_TRACK and re.match(r"(?i)\W*non[- ]?record", name):
        findings.warn(f"submission.json calls itself {name[:40]!r}… but the folder is on the record track")
    return parent or claimed


def _artifact_problems(artifacts: list[Path], logs: list[LogFacts], findings: Findings) -> None:
    by_seed = {f.seed: f for f in logs if f.seed is not None}
    for path in artifacts:
        match = SEED_ARTIFACT.search(path.stem)
        log = by_seed.get(int(match[1])) if match else None
        if log is not None and log.bytes_model is not None and log.bytes_model != path.stat().st_size:
            findings.mismatch(f"{path.name} is {path.stat().st_size:,} bytes but {log.name} logged "
                              f"{log.bytes_model:,} for seed {log.seed}")


def _submission(path: Path | None, findings: Findings) -> dict:
    if path is None or path.stat().st_size == 0:
        return {}
    data, json_problems = _read_json(path)
    errors, warnings = schema.grade(data) if not json_problems else (json_problems, [])
    findings.errors += errors
    findings.warnings += warnings
    return data if isinstance(data, dict) else {}


CodeFiles = dict[str, tuple[int, str | None]]  # name → (bytes, Python source or None)


def _code(folder: Path, folder_files: list[Path], script: Path | None,
          findings: Findings) -> tuple[CodeFiles, str | None]:
    """({name: (bytes, Python source or None)} of the script and the files it reads, the packed digest)."""
    if script is None:
        return {}, None
    texts, embedded, code_problems = _check_code(script)
    findings.errors += code_problems
    files = {script.name: (script.stat().st_size, texts[0] if texts else None)}
    top_level = [p for p in folder_files if p.parent == folder]  # regular files only: symlinks never count
    others = other_files(top_level, texts, script.name)
    sources = {name: _source(folder / name, findings) for name in others if name.endswith(".py")}
    # A helper module is parsed in-process (its wrapper bytes) only once it compiled in the child;
    # one that does not compile is counted as the bytes it ships.
    compiled = compile_isolated({name: text for name, text in sources.items() if text is not None})
    for name, size in others.items():
        problem = compiled.get(name)
        if problem:
            findings.note(f"{name} does not compile ({problem}): counted as the bytes it ships")
        files[name] = (size, None if problem else sources.get(name))
    return files, embedded.sha256() if embedded else None


def _readme(folder: Path, files: list[Path], findings: Findings) -> str:
    """README.md's text ("" if absent), read as a bounded regular file like everything else."""
    path = folder / "README.md"
    if path not in files:
        return ""
    try:
        return read_bytes(path, MAX_SCRIPT_BYTES, "README.md").decode("utf-8", errors="replace")
    except GolfError as e:
        findings.error(str(e))
        return ""


def _source(path: Path, findings: Findings) -> str | None:
    try:
        return read_bytes(path, MAX_SCRIPT_BYTES, path.name).decode("utf-8", errors="replace")
    except GolfError as e:
        findings.error(str(e))
        return None


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def check_record(folder: Path) -> dict[str, Any]:
    """Every error, warning and note about a record folder; `ok` is True when there is no error."""
    if not folder.is_dir():
        raise GolfError(f"{folder} is not a folder; pass a record folder (records/track_*/<date>_<name>/)")
    files, link_problems = record_files(folder)
    findings = Findings()
    findings.errors += link_problems
    submission, scripts, log_paths = _layout(folder, files, findings)
    data = _submission(submission, findings)
    findings.strict = data.get("schema") == schema.SCHEMA_ID
    track = _track(folder, data, findings)
    logs = _read_logs(folder, log_paths, findings)
    scored = [f for f in logs if f.scores]
    readme = _readme(folder, files, findings)
    backing = claims.check_headline(data, "val_bpb", scored, readme, findings)
    claims.check_headline(data, "val_loss", scored, readme, findings)
    claims.check_seed_results(data, scored, findings)
    backing_logs = list({id(log): log for log, _ in backing}.values())

    script = sizes.choose_script(scripts, backing_logs, data, findings)
    code_files, digest = _code(folder, files, script, findings)
    artifacts = [p for p in files if p.parent == folder and is_artifact_name(p.name)]
    model, model_source = sizes.model_bytes(artifacts, logs, backing_logs, findings)
    counted, ledger = sizes.enforce(sizes.count_code(code_files), model, model_source, findings)
    findings.errors += ledger.problems()
    sizes.note_tokenizers(folder, files, ledger, findings)
    sizes.check_logged_sizes(logs, counted, {p.name: p.stat().st_size for p in scripts}, digest, findings)
    sizes.check_size_claims(data, ledger, counted, logs, backing_logs, artifacts, findings)
    _artifact_problems(artifacts, logs, findings)

    record = track == RECORD_TRACK
    shown = {log.name: score for log, score in backing}
    refuted = rules.check_record_track(logs, shown, findings) if record else set()
    if rules.check_seeds(logs, backing_logs, record, findings) < 3:
        refuted.add("seeds")
    if ledger.headroom < 0 or any(f.bytes_total is not None and f.bytes_total > CAP_BYTES for f in logs):
        refuted.add("cap")
    rules.check_compliance(data, refuted, findings)
    check_readme(readme, schema.as_number(schema.claimed(data, "val_bpb")[0]), {p.name for p in files}, logs,
                 findings)
    return {"command": "pack --check", "folder": str(folder), "ok": not findings.errors, "track": track,
            "problems": findings.errors, "warnings": findings.warnings, "notes": findings.notes,
            "ledger": ledger.as_dict(), "code": counted.as_dict(script.name if script else None),
            "packed": digest is not None, "source_sha256": digest,
            "logs": [_log_row(f, shown.get(f.name)) for f in logs],
            "artifacts": [p.name for p in artifacts]}


def _log_row(f: LogFacts, claimed: Score | None) -> dict[str, Any]:
    score = claimed or next((s for s in reversed(f.scores) if s.label == f.final_label), None)
    # A non-finite logged score is null here (JSON has no NaN); claims never match one, so it is an error.
    return {"file": f.name, "seed": f.seed, "val_loss": _finite(score.val_loss) if score else None,
            "val_bpb": _finite(score.val_bpb) if score else None, "label": score.label if score else None,
            "backs_claim": claimed is not None, "trained": f.trained,
            "world_size": f.world_sizes[0] if f.world_sizes else None, "train_time_ms": f.train_time_ms,
            "bytes_model": f.bytes_model, "bytes_code": f.bytes_code, "bytes_total": f.bytes_total}
