"""Launch train_gpt.py under torchrun, the way a record run is launched.

Used by `golf demo`, the benchmarks and the tests, so they all exercise the real trainer
(process group, data sharding, artifact round trip) rather than an in-process imitation.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, TextIO

from golf.errors import GolfError


def train_script() -> Path:
    spec = importlib.util.find_spec("train_gpt")
    if spec is None or spec.origin is None:
        raise GolfError("train_gpt.py is not installed beside golf; reinstall with `pip install -e .`")
    return Path(spec.origin)


def torchrun_command(nproc: int, script: Path | None = None) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            str(script or train_script())]


def train_env(run_dir: Path, overrides: dict[str, str]) -> dict[str, str]:
    return {**os.environ, "RUN_DIR": str(run_dir), "RUN_ID": run_dir.name, **overrides}


def launch_training(run_dir: Path, overrides: dict[str, str], *, nproc: int,
                    log: TextIO | None = None) -> dict[str, Any]:
    """Run the trainer to completion, streaming its output to `log`; return its result.json."""
    proc = subprocess.Popen(torchrun_command(nproc), env=train_env(run_dir, overrides),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    tail: list[str] = []
    for line in proc.stdout:
        tail = (tail + [line])[-20:]
        if log is not None:
            log.write("  | " + line)
            log.flush()
    if proc.wait() != 0:
        last = "".join(tail).strip().splitlines()[-1:] or ["no output"]
        raise GolfError(f"train_gpt.py failed (exit {proc.returncode}): {last[0]} (log: {run_dir / 'train.log'})")
    return json.loads((run_dir / "result.json").read_text())


def leave_worker() -> None:
    """End a torchrun worker of a multi-process run that finished (its process group destroyed,
    its files written) without the interpreter's teardown of torch's C++ distributed state.

    That teardown aborted a finished gloo rank ("terminate called without an active exception",
    SIGABRT) about once in 30 two-process runs in CI, after every result was written; torchrun then
    reports the whole run failed. A single-process run exits normally."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
