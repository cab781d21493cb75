"""Prove a packed train_gpt.py runs alone: a 2-step CPU run in an empty folder, golf out of reach.

Isolation: `python -S` skips site-packages processing, so the editable install's path hook
(a .pth file, which `-I` would still run) never puts golf on sys.path; PYTHONPATH then holds
only the folders of the third-party packages the sources import. The working directory is an
empty temp folder with just the packed file in it, the environment is rebuilt from nothing
(data and tokenizer paths, a tiny model, DEVICE=cpu), and the run must report the packed file's
own size and the embedded sources' digest. The packed file also refuses to import a golf/quant
module it does not embed, so even a golf installed in site-packages could not stand in.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from golf import embedded
from golf.errors import GolfError
from golf.record.requirements import import_roots
from golf.selfcontained import Sources

# Small enough for ~10 s on 2 CPU cores, big enough to exercise every code path of a real run
# (train, validate, quantize, write, reload, score).
SMOKE_ENV = {
    "ITERATIONS": "2", "MAX_WALLCLOCK_SECONDS": "0", "NUM_LAYERS": "2", "MODEL_DIM": "64", "NUM_HEADS": "4",
    "NUM_KV_HEADS": "2", "TRAIN_SEQ_LEN": "64", "TRAIN_BATCH_TOKENS": "1024", "GRAD_ACCUM_STEPS": "1",
    "VAL_BATCH_SIZE": "8192", "VAL_MAX_TOKENS": "8192", "VAL_LOSS_EVERY": "0", "WARMUP_STEPS": "0",
    "DEVICE": "cpu", "SEED": "1", "RUN_ID": "smoke",
}
TIMEOUT_S = 300.0


def isolated_env(sources: Sources, home: Path) -> dict[str, str]:
    threads = str(max(1, min(4, os.cpu_count() or 1)))
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "TMPDIR": str(home),
            "PYTHONPATH": os.pathsep.join(str(p) for p in import_roots(sources)),
            "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": threads, "LANG": "C.UTF-8"}


def golf_importable(env: dict[str, str], cwd: Path) -> bool:
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('golf') is None)"
    return subprocess.run([sys.executable, "-S", "-c", probe], env=env, cwd=cwd).returncode == 0


def smoke_run(packed: bytes, sources: Sources, *, data: Path | None = None, tokenizer: Path | None = None,
              timeout: float = TIMEOUT_S, model: str = "ar", eval_samples: int = 1) -> dict[str, Any]:
    """Run `packed` alone for 2 steps on CPU, training the runs' model family (`MODEL`, scored with
    their EVAL_SAMPLES); raise GolfError with the reason if it fails."""
    data = data or embedded.shards_dir()
    tokenizer = tokenizer or embedded.tokenizer_path()
    work = Path(tempfile.mkdtemp(prefix="golf-smoke-"))
    try:
        home, cwd = work / "home", work / "cwd"
        home.mkdir()
        cwd.mkdir()
        (cwd / "train_gpt.py").write_bytes(packed)
        env = isolated_env(sources, home)
        if golf_importable(env, cwd):
            raise GolfError("cannot isolate the smoke run: golf is importable without site processing "
                            f"(from PYTHONPATH {env['PYTHONPATH']}); install golf editable (pip install -e .)")
        run_env = {**env, **SMOKE_ENV, "DATA_PATH": str(data.resolve()), "TOKENIZER_PATH": str(tokenizer.resolve()),
                   "RUN_DIR": str(work / "run"), "MODEL": model, "EVAL_SAMPLES": str(eval_samples)}
        start = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, "-S", "train_gpt.py"], env=run_env, cwd=cwd,
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise GolfError(f"the packed train_gpt.py smoke run took over {timeout:.0f} s") from None
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or ["no output"]
            raise GolfError(f"the packed train_gpt.py failed when run alone (exit {proc.returncode}): {tail[0]}")
        result = json.loads((work / "run" / "result.json").read_text())
        report = {"seconds": round(seconds, 1), "model": result["model"], "steps": result["steps"],
                  "val_bpb": result["val_bpb"], "label": result["label"],
                  "bytes_code": result["bytes_code"], "source_sha256": result["source_sha256"],
                  "packed_code": result["packed_code"], "cwd_files": sorted(p.name for p in cwd.iterdir()),
                  "python": [sys.executable, "-S"], "pythonpath": env["PYTHONPATH"]}
        expected = {"bytes_code": len(packed), "source_sha256": sources.sha256(), "packed_code": True}
        wrong = {k: (report[k], v) for k, v in expected.items() if report[k] != v}
        if wrong:
            raise GolfError(f"the packed train_gpt.py ran but reported {wrong} (got, expected)")
        return report
    finally:
        shutil.rmtree(work, ignore_errors=True)
