"""`golf pack RUN_DIR ...`: a record folder that is right by construction.

From finished runs (result.json, train.log, the artifact) and the repo's train_gpt.py it writes
records/track_<track>/<YYYY-MM-DD>_<Name>/ with the self-contained train_gpt.py, the logs,
requirements.txt, submission.json and README.md. Before writing anything it proves the ledger
(each run logged exactly the packed file's size and its artifact's size, under the cap; each run
was trained with exactly the sources that ship) and runs the packed file alone. The folder is
assembled in a temp folder beside the target, checked with `golf pack --check`, and renamed into
place, so a failed pack leaves nothing behind and an existing folder is replaced only with --force.
"""

from __future__ import annotations

import datetime
import json
import math
import re
import shutil
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from golf.challenge import GPUS, TRAIN_SECONDS
from golf.errors import GolfError
from golf.limits import MAX_RECORD_JSON_BYTES
from golf.record import readme, schema
from golf.record.check import check_record
from golf.record.ledger import Ledger
from golf.record.logs import LogFacts, is_log_name, parse_log
from golf.record.requirements import requirements_txt
from golf.record.significance import bpb_to_nats, improvement_test
from golf.record.smoke import smoke_run
from golf.safefiles import read_json, record_files
from golf.selfcontained import Sources, pack, read_sources, unpack

# Keys of result.json["config"] that may differ between the seeds of one submission.
_PER_RUN_KEYS = {"seed", "run_id", "run_dir"}
_SLUG_MAX = 80
_RESULT_KEYS = ("val_loss", "val_bpb", "label", "seed", "steps", "train_time_ms", "tokens", "bytes", "model",
                "model_params", "model_config", "quant", "compressor", "world_size", "grad_accum_steps", "device",
                "versions")


@dataclass(frozen=True)
class Run:
    path: Path
    result: dict[str, Any]
    log: LogFacts
    artifact: Path


def slug(name: str) -> str:
    """The folder-safe form of a name: letters, digits, '-' and '_' only (no '.', no '/')."""
    out = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_-")
    if not out:
        raise GolfError(f"--name {name!r} has no letters or digits to name a folder with")
    if len(out) > _SLUG_MAX:
        raise GolfError(f"--name is {len(out)} characters as a folder name; keep it under {_SLUG_MAX}")
    return out


def load_run(path: Path) -> Run:
    if not path.is_dir():
        raise GolfError(f"{path} is not a run folder (train_gpt.py's RUN_DIR)")
    if not (path / "result.json").exists():
        raise GolfError(f"{path} has no result.json: the run did not finish")
    result = read_json(path / "result.json", MAX_RECORD_JSON_BYTES, "result.json")
    missing = [key for key in _RESULT_KEYS if key not in result] if isinstance(result, dict) else ["all keys"]
    if missing:
        raise GolfError(f"{path}/result.json lacks {', '.join(missing)}; was it written by train_gpt.py?")
    artifact = path / str(result.get("artifact", "model.golf"))
    for needed in (path / "train.log", artifact):
        if not needed.is_file():
            raise GolfError(f"{path} has no {needed.name}")
    return Run(path, result, parse_log(path / "train.log"), artifact)


def _same_setup(runs: list[Run]) -> None:
    def setup(run: Run) -> dict[str, Any]:
        r = run.result
        return {"config": {k: v for k, v in r.get("config", {}).items() if k not in _PER_RUN_KEYS},
                "model_config": r.get("model_config"), "quant": r.get("quant"), "compressor": r.get("compressor"),
                "world_size": r.get("world_size"), "versions": r.get("versions")}

    first = setup(runs[0])
    for run in runs[1:]:
        other = setup(run)
        if other != first:
            keys = sorted(k for k in first if first[k] != other[k])
            raise GolfError(f"{run.path} is not another seed of {runs[0].path}: they differ in {', '.join(keys)}")
    seeds = [run.result.get("seed") for run in runs]
    if len(set(seeds)) != len(seeds):
        raise GolfError(f"two runs have the same seed ({seeds}); a multi-seed record needs distinct seeds")


def verify_packed(packed: bytes, sources: Sources, script: Path) -> list[str]:
    """The packed file holds exactly the sources on disk, byte for byte, and reads back as itself."""
    embedded = unpack(packed.decode())
    if embedded is None:
        return ["the packed train_gpt.py has no embedded sources"]
    problems = []
    on_disk = read_sources(script).files()
    for name, text in sorted(embedded.files().items()):
        if on_disk.get(name) != text:
            problems.append(f"packed train_gpt.py: embedded {name} differs from the repo's")
    problems += [f"packed train_gpt.py: {name} is missing" for name in sorted(set(on_disk) - set(embedded.files()))]
    if not problems and (embedded != sources or pack(embedded) != packed):
        problems.append("packed train_gpt.py does not re-pack to itself")
    return problems


def ledger_problems(runs: list[Run], packed: bytes, sources: Sources, track: str) -> list[str]:
    """Every way the runs' logged sizes or sources disagree with what ships."""
    problems = []
    for run in runs:
        r, log, name = run.result, run.log, run.path.name
        shipped = run.artifact.stat().st_size
        if r.get("source_sha256") != sources.sha256():
            problems.append(f"{name}: trained with other sources (sha256 {str(r.get('source_sha256'))[:16]}) than the "
                            f"repo's now ({sources.sha256()[:16]}); re-run it with this code")
        for what, logged, actual in (("result.json bytes_model", r.get("bytes_model"), shipped),
                                     ("train.log model size", log.bytes_model, shipped),
                                     ("result.json bytes_code", r.get("bytes_code"), len(packed)),
                                     ("train.log code size", log.bytes_code, len(packed)),
                                     ("train.log total", log.bytes_total, shipped + len(packed))):
            if logged != actual:
                problems.append(f"{name}: {what} is {logged} but what ships is {actual:,} bytes")
        if log.val_bpb is None or not math.isclose(log.val_bpb, r["val_bpb"], abs_tol=1e-8):
            problems.append(f"{name}: train.log's final val_bpb {log.val_bpb} ≠ result.json's {r['val_bpb']}")
        overshoot = r.get("train_time_ms", 0) / max(r.get("steps", 1), 1)  # the run stops at the first step past the cap
        if track == "10min_16mb" and (r.get("device") != "cuda" or r.get("train_time_ms", math.inf) > 1000 * TRAIN_SECONDS + overshoot):
            problems.append(f"{name}: the 10min_16mb track needs {GPUS}×H100 runs of ≤ {TRAIN_SECONDS:.0f} s (this one: "
                            f"{r.get('device')}, {r.get('train_time_ms', 0) / 1000:.0f} s)")
    return problems


def load_baseline(baseline: str, bytes_per_token: float) -> tuple[list[float], float, str]:
    """(per-seed val_loss in nats, mean val_bpb, description) from a bpb number or a record folder."""
    try:
        bpb = float(baseline)
    except ValueError:
        folder = Path(baseline)
        if not folder.is_dir():
            raise GolfError(f"--baseline {baseline!r} is neither a val_bpb number nor a record folder") from None
        logs = [parse_log(p) for p in sorted(record_files(folder)[0]) if p.parent == folder and is_log_name(p.name)]
        scored = [f for f in logs if f.val_loss is not None and f.val_bpb is not None
                  and math.isfinite(f.val_loss) and math.isfinite(f.val_bpb)]
        if not scored:
            raise GolfError(f"--baseline {folder}: no log with a final val_loss/val_bpb line") from None
        return ([f.val_loss for f in scored], statistics.fmean(f.val_bpb for f in scored),
                f"{folder.name} ({len(scored)} log(s))")
    if not (math.isfinite(bpb) and bpb > 0):
        raise GolfError(f"--baseline {baseline} is not a positive val_bpb")
    return [bpb_to_nats(bpb, bytes_per_token)], bpb, f"val_bpb {bpb}"


def _std(values: list[float]) -> float | None:
    return statistics.stdev(values) if len(values) > 1 else None


def submission(runs: list[Run], *, name: str, author: str, github_id: str, track: str, date: str, blurb: str,
               ledger: Ledger, sources: Sources, significance: dict[str, Any] | None, baseline_bpb: float | None,
               golf_version: str) -> dict[str, Any]:
    losses = [run.result["val_loss"] for run in runs]
    bpbs = [run.result["val_bpb"] for run in runs]
    labels = {run.result["label"] for run in runs}
    hardware = "; ".join(dict.fromkeys(run.log.hardware or run.result.get("device", "unknown") for run in runs))
    return {
        "schema": schema.SCHEMA_ID, "name": name, "author": author, "github_id": github_id, "date": date,
        "track": track, "blurb": blurb,
        "val_bpb": statistics.fmean(bpbs), "val_bpb_std": _std(bpbs),
        "val_loss": statistics.fmean(losses), "val_loss_std": _std(losses),
        "label": "bound" if "bound" in labels else "exact",
        "seeds": [run.result["seed"] for run in runs],
        "seed_results": {str(run.result["seed"]): {
            "val_loss": run.result["val_loss"], "val_bpb": run.result["val_bpb"], "label": run.result["label"],
            "artifact_bytes": run.artifact.stat().st_size, "steps": run.result["steps"],
            "train_time_ms": run.result["train_time_ms"], "val_tokens": run.result["tokens"],
            "log": f"train_seed{run.result['seed']}.log"}
            for run in runs},
        "bytes_code": ledger.bytes_code, "bytes_model_max": ledger.bytes_model_max,
        "bytes_other": sum(ledger.bytes_other.values()), "bytes_total": ledger.bytes_total,
        "hardware": hardware, "pytorch_version": runs[0].result["versions"]["torch"],
        "source_sha256": sources.sha256(), "golf_version": golf_version,
        "baseline_val_bpb": baseline_bpb,
        "improvement_nats": significance["improvement_nats"] if significance else None,
        "improvement_bpb": significance["improvement_bpb"] if significance else None,
        "p_value": significance["p_value"] if significance else None,
        "significance": f"{significance['test']}: {significance['note']}" if significance else None,
    }


def _replace(tmp: Path, target: Path) -> None:
    """Move the finished folder into place; an old one (only with --force) goes only once it has."""
    if not target.exists():
        tmp.rename(target)
        return
    old = target.with_name(f".{target.name}.old-{tmp.name}")
    target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old)


def pack_record(run_dirs: list[Path], *, name: str, author: str, github_id: str, track: str, out: Path,
                script: Path, baseline: str | None = None, blurb: str | None = None, force: bool = False,
                artifacts: bool = False, date: str | None = None, log: TextIO | None = None) -> dict[str, Any]:
    log = log or sys.stderr  # looked up per call: a default bound at import would outlive a redirected stderr
    if track not in schema.TRACKS:
        raise GolfError(f"--track must be one of {', '.join(schema.TRACKS)}, not {track!r}")
    for label, value in (("--author", author), ("--github-id", github_id), ("--name", name)):
        if not value.strip() or "\n" in value:
            raise GolfError(f"{label} must be one non-empty line")
    if not run_dirs:
        raise GolfError("give at least one RUN_DIR (a finished train_gpt.py run)")
    date = date or datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    target = out / f"track_{track}" / f"{date}_{slug(name)}"
    if target.exists() and not force:
        raise GolfError(f"{target} already exists; pass --force to replace it")
    runs = [load_run(path) for path in run_dirs]
    _same_setup(runs)

    print(f"packing {script} and the golf/quant modules it imports", file=log, flush=True)
    sources = read_sources(script)
    packed = pack(sources)
    ledger = Ledger(len(packed), max(run.artifact.stat().st_size for run in runs), {}, "artifacts")
    report: dict[str, Any] = {"command": "pack", "folder": str(target), "ledger": ledger.as_dict(),
                              "packed_bytes": len(packed), "source_bytes": sources.source_bytes(),
                              "modules": len(sources.modules), "source_sha256": sources.sha256()}
    problems = verify_packed(packed, sources, script) + ledger_problems(runs, packed, sources, track) + ledger.problems()
    if not problems:
        print(f"running the packed train_gpt.py ({len(packed):,} bytes) alone for a 2-step CPU smoke run",
              file=log, flush=True)
        try:
            report["smoke"] = smoke_run(packed, sources, model=runs[0].result["model"],
                                        eval_samples=int(runs[0].result.get("samples", 1)))
        except GolfError as e:
            problems.append(str(e))
    if problems:
        return {**report, "ok": False, "problems": problems}

    first = runs[0].result
    bytes_per_token = first["bytes"] / first["tokens"]
    significance, baseline_bpb = None, None
    if baseline is not None:
        base_nats, baseline_bpb, described = load_baseline(baseline, bytes_per_token)
        significance = {**improvement_test([r.result["val_loss"] for r in runs], base_nats, bytes_per_token),
                        "baseline": described}
    embedded_data = first.get("config", {}).get("data_path") == "embedded"
    blurb = blurb or (f"{len(runs)} seed(s) of golf's train_gpt.py ({first['model']}, {first['model_params']:,} "
                      f"parameters, {first['quant']}+{first['compressor']}) on {runs[0].log.hardware or first['device']}.")
    sub = submission(runs, name=name, author=author, github_id=github_id, track=track, date=date, blurb=blurb,
                     ledger=ledger, sources=sources, significance=significance, baseline_bpb=baseline_bpb,
                     golf_version=first["versions"]["golf"])
    files = {"train_gpt.py": packed, "requirements.txt": requirements_txt(sources).encode()}
    for run in runs:
        files[f"train_seed{run.result['seed']}.log"] = (run.path / "train.log").read_bytes()
        if artifacts:
            files[f"model_seed{run.result['seed']}.golf"] = run.artifact.read_bytes()
    files["submission.json"] = (json.dumps(sub, indent=2) + "\n").encode()
    files["README.md"] = readme.render(sub, first, ledger.as_dict(), significance, report["smoke"],
                                       sorted([*files, "README.md"]), embedded_data, len(sources.modules)).encode()

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        for filename, data in files.items():
            (tmp / filename).write_bytes(data)
        check = check_record(tmp)
        if not check["ok"]:  # a bug in this module, not in the runs: keep nothing
            return {**report, "ok": False, "problems": [f"self-check: {p}" for p in check["problems"]]}
        _replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return {**report, "ok": True, "problems": [], "submission": sub, "significance": significance,
            "files": sorted(files)}
