"""`golf pack --check`: validate a record folder, ours or anyone's, and list every problem.

Nothing in the folder is executed or imported: train_gpt.py is compiled (not run) in a child
process under a memory limit, a packed file's embedded sources are decoded as data and compiled
the same way, logs are read as text, artifacts are only measured, nothing is unpickled, and
symlinks, FIFOs and devices are reported rather than followed or read (golf.safefiles). Sizes are
recomputed from the files (golf.record.ledger); claims in submission.json and the logs are
checked against them and against each other.
"""

from __future__ import annotations

import math
import re
import statistics
from pathlib import Path
from typing import Any

from golf.challenge import TRAIN_SECONDS
from golf.errors import GolfError
from golf.limits import MAX_RECORD_JSON_BYTES, MAX_SCRIPT_BYTES
from golf.record import schema
from golf.record.ledger import Ledger, is_artifact_name, other_files
from golf.record.logs import LogFacts, is_log_name, parse_log
from golf.safefiles import compile_isolated, read_json, read_text, record_files
from golf.selfcontained import Sources, unpack

REQUIRED_FILES = ("README.md", "submission.json", "train_gpt.py")
BPB_TOLERANCE = 5e-5  # official records round means to 4 decimals; golf's own match to 1e-8
SEED_ARTIFACT = re.compile(r"seed[_-]?(\d+)")


def _read_json(path: Path) -> tuple[Any, list[str]]:
    try:
        return read_json(path, MAX_RECORD_JSON_BYTES, "submission.json"), []
    except GolfError as e:
        return None, [str(e)]


def _check_code(path: Path) -> tuple[str, Sources | None, list[str]]:
    """(source, the embedded sources if packed, problems). Compiles in a child; never executes."""
    try:
        code = read_text(path, MAX_SCRIPT_BYTES, "train_gpt.py")
    except GolfError as e:
        return "", None, [f"{e}; not compiling it"]
    problem = compile_isolated({"train_gpt.py": code})["train_gpt.py"]
    if problem:
        return "", None, [f"train_gpt.py does not compile: {problem}"]
    try:
        sources = unpack(code)
    except ValueError as e:
        return code, None, [f"train_gpt.py: {e}"]
    if sources is None:
        return code, None, []
    compiled = compile_isolated({f"train_gpt.py:{name}": text for name, text in sources.files().items()})
    return code, sources, [f"{name.replace(':', ': embedded ', 1)} does not compile: {problem}"
                           for name, problem in compiled.items() if problem]


def _model_bytes(artifacts: list[Path], logs: list[LogFacts]) -> tuple[int, str, list[str]]:
    if artifacts:
        return max(p.stat().st_size for p in artifacts), "artifacts", []
    logged = [f.bytes_model for f in logs if f.bytes_model is not None]
    missing = [f"{f.path.name}: no 'Serialized model ...: N bytes' line" for f in logs if f.bytes_model is None]
    if not logged:
        return 0, "logs", missing or ["no log states the model size and no artifact is in the folder"]
    return max(logged), "logs", missing


def _claims(data: dict, ledger: Ledger, logs: list[LogFacts], artifacts: list[Path], digest: str | None,
            track: str | None) -> list[str]:
    problems: list[str] = []
    scored = [f for f in logs if f.val_bpb is not None]
    if not scored:
        problems.append("no log has a final '... val_loss:X val_bpb:Y' line")
    for f in logs:
        if f.val_bpb is None:
            problems.append(f"{f.path.name}: no final val_bpb line")
        elif not (math.isfinite(f.val_bpb) and math.isfinite(f.val_loss)):
            problems.append(f"{f.path.name}: the final score is val_loss {f.val_loss} val_bpb {f.val_bpb}, "
                            "not a finite number")
    for key in ("val_bpb", "val_loss"):
        values = [getattr(f, key) for f in scored if math.isfinite(f.val_bpb) and math.isfinite(f.val_loss)]
        claimed = data.get(key)
        if values and schema.is_kind("number", claimed) and abs(claimed - statistics.fmean(values)) > BPB_TOLERANCE:
            problems.append(f"submission.json {key} {claimed} does not match the logs' mean {statistics.fmean(values):.8f} "
                            f"({', '.join(f'{v:.8f}' for v in values)})")
    code_total = ledger.bytes_code + sum(ledger.bytes_other.values())
    for key, actual in (("bytes_total", ledger.bytes_total), ("bytes_code", code_total),
                        ("bytes_model_max", ledger.bytes_model_max), ("bytes_other", sum(ledger.bytes_other.values()))):
        claimed = data.get(key)
        if schema.is_kind("int", claimed) and claimed != actual and (key != "bytes_model_max" or artifacts):
            problems.append(f"submission.json {key} is {claimed:,} but the folder ships {actual:,}")
    for f in logs:
        if f.bytes_code is not None and f.bytes_code != code_total:
            problems.append(f"{f.path.name}: logged code size {f.bytes_code:,} bytes, but train_gpt.py"
                            f"{' and the files it reads' if ledger.bytes_other else ''} are {code_total:,}")
        if None not in (f.bytes_total, f.bytes_model, f.bytes_code) and f.bytes_total != f.bytes_model + f.bytes_code:
            problems.append(f"{f.path.name}: logged total {f.bytes_total:,} ≠ model {f.bytes_model:,} + code {f.bytes_code:,}")
        if digest and f.source_sha256 and f.source_sha256 != digest:
            problems.append(f"{f.path.name}: the run's sources (sha256 {f.source_sha256[:16]}) are not the ones "
                            f"train_gpt.py embeds ({digest[:16]})")
        # A capped run stops at the first step past the cap (the official baseline logs 600,038 ms).
        if track == "10min_16mb" and f.train_time_ms is not None and \
                f.train_time_ms > 1000 * TRAIN_SECONDS + (f.step_avg_ms or 0.0):
            problems.append(f"{f.path.name}: train_time {f.train_time_ms / 1000:.1f} s is over the 10-minute track's {TRAIN_SECONDS:.0f} s")
    by_seed = {f.seed: f for f in logs if f.seed is not None}
    for path in artifacts:
        match = SEED_ARTIFACT.search(path.stem)
        log = by_seed.get(int(match[1])) if match else None
        if log is not None and log.bytes_model is not None and log.bytes_model != path.stat().st_size:
            problems.append(f"{path.name} is {path.stat().st_size:,} bytes but {log.path.name} logged "
                            f"{log.bytes_model:,} for seed {log.seed}")
    results = data.get("seed_results")
    for seed, claim in (results.items() if isinstance(results, dict) else []):
        log = by_seed.get(int(seed)) if seed.isascii() and seed.isdigit() else None
        if log is None:
            problems.append(f"submission.json seed_results[{seed!r}] has no log with seed:{seed}")
        elif isinstance(claim, dict) and schema.is_kind("number", claim.get("val_bpb")) and log.val_bpb is not None \
                and abs(claim["val_bpb"] - log.val_bpb) > BPB_TOLERANCE:
            problems.append(f"submission.json seed_results[{seed!r}] val_bpb {claim['val_bpb']} ≠ "
                            f"{log.path.name}'s {log.val_bpb:.8f}")
    return problems


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def check_record(folder: Path) -> dict[str, Any]:
    """Every problem with a record folder; `ok` is True when there are none."""
    if not folder.is_dir():
        raise GolfError(f"{folder} is not a folder; pass a record folder (records/track_*/<date>_<name>/)")
    files, problems = record_files(folder)
    names = {p.relative_to(folder).as_posix() for p in files}
    problems += [f"missing required file {name}" for name in REQUIRED_FILES if name not in names]
    logs_paths = [p for p in files if is_log_name(p.name)]
    if not logs_paths:
        problems.append("missing train log(s): no *.log or *.txt file")
    data: Any = {}
    if "submission.json" in names:
        data, json_problems = _read_json(folder / "submission.json")
        problems += json_problems or schema.validate(data)
    data = data if isinstance(data, dict) else {}
    code, embedded = "", None
    if "train_gpt.py" in names:
        code, embedded, code_problems = _check_code(folder / "train_gpt.py")
        problems += code_problems
    digest = embedded.sha256() if embedded else None
    logs: list[LogFacts] = []
    for path in logs_paths:
        try:
            logs.append(parse_log(path))
        except (OSError, ValueError) as e:
            problems.append(f"{path.name}: unreadable log ({e})")
    artifacts = [p for p in files if is_artifact_name(p.name)]
    model, model_source, model_problems = _model_bytes(artifacts, logs)
    problems += model_problems
    code_bytes = (folder / "train_gpt.py").stat().st_size if "train_gpt.py" in names else 0
    top_level = [p for p in files if p.parent == folder]
    ledger = Ledger(code_bytes, model, other_files(top_level, [code, *(embedded.files().values() if embedded else [])]),
                    model_source)
    problems += ledger.problems()
    track = folder.parent.name.removeprefix("track_") if folder.parent.name.startswith("track_") else None
    problems += _claims(data, ledger, logs, artifacts, digest, track)
    return {"command": "pack --check", "folder": str(folder), "ok": not problems, "problems": problems,
            "ledger": ledger.as_dict(), "packed": digest is not None, "source_sha256": digest,
            # A non-finite logged score is reported as a problem above and as null here: JSON has no NaN.
            "logs": [{"file": f.path.name, "seed": f.seed, "val_loss": _finite(f.val_loss),
                      "val_bpb": _finite(f.val_bpb), "label": f.final_label, "bytes_model": f.bytes_model,
                      "bytes_code": f.bytes_code}
                     for f in logs],
            "artifacts": [p.name for p in artifacts]}
