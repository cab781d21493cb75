"""Reading other people's files and writing our own, without being hung, flooded or half-done.

Reading (record folders, artifacts, scripts): only regular files are read, never a FIFO (which
would block), a device (endless) or a symlink (which may point anywhere: it is reported, never
followed or counted); every read has a size cap from `golf.limits`; JSON has a depth cap; a
script is compiled in a child process under a memory and time limit, because compiling a few MB
of deeply nested code can take gigabytes before Python's recursion check fires.

Writing (shards, tokenizers, unpacked sources): output is assembled in a temp folder beside the
target and moved into place only when complete, so a failure (a bad document, a full disk)
leaves nothing behind and replaces nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from golf.errors import GolfError
from quant.errors import QuantError
from quant.limits import loads_json, read_regular_file

COMPILE_MEMORY_BYTES = 1 << 30  # address space of the compiling child; a real record's code needs ~5%
COMPILE_SECONDS = 60
# Runs in `python -I -S`: reads {name: source} as JSON on stdin, compiles each (never runs it),
# prints {name: null or the error}.
_COMPILER = """
import json, sys
out = {}
for name, text in json.load(sys.stdin).items():
    try:
        compile(text, name, "exec", dont_inherit=True)
        out[name] = None
    except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
        out[name] = f"{type(e).__name__}: {e}"[:300]
json.dump(out, sys.stdout)
"""


def read_bytes(path: Path, max_bytes: int, what: str = "file") -> bytes:
    try:
        return read_regular_file(path, max_bytes, what)
    except QuantError as e:
        raise GolfError(str(e)) from None


def read_text(path: Path, max_bytes: int, what: str = "file") -> str:
    data = read_bytes(path, max_bytes, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise GolfError(f"{what} {path} is not UTF-8 (byte {e.start})") from None


def read_json(path: Path, max_bytes: int, what: str = "file") -> Any:
    try:
        return loads_json(read_bytes(path, max_bytes, what), f"{what} {path}", max_bytes)
    except QuantError as e:
        raise GolfError(str(e)) from None


def record_files(folder: Path) -> tuple[list[Path], list[str]]:
    """Regular files at the top level and one folder down, and a problem for anything else found
    there: a symlink (never followed, never counted), a FIFO, device or socket, an unlistable folder."""
    files: list[Path] = []
    problems: list[str] = []

    def entries(where: Path) -> list[os.DirEntry]:
        try:
            with os.scandir(where) as it:
                return sorted(it, key=lambda e: e.name)
        except OSError as e:
            problems.append(f"{where.relative_to(folder.parent)}: cannot list it ({e.strerror})")
            return []

    def classify(entry: os.DirEntry, descend: bool) -> None:
        name = Path(entry.path).relative_to(folder)
        if entry.is_symlink():
            problems.append(f"{name} is a symlink; a record holds regular files only")
        elif entry.is_dir(follow_symlinks=False):
            for sub in entries(Path(entry.path)) if descend else []:
                classify(sub, descend=False)
        elif entry.is_file(follow_symlinks=False):
            files.append(Path(entry.path))
        else:
            problems.append(f"{name} is not a regular file (a FIFO, device or socket); a record holds regular "
                            "files only")

    for entry in entries(folder):
        classify(entry, descend=True)
    return files, problems


def _limit_child() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (COMPILE_MEMORY_BYTES, COMPILE_MEMORY_BYTES))


def compile_isolated(sources: dict[str, str]) -> dict[str, str | None]:
    """{name: None if it compiles, else why not}, compiled in a child under COMPILE_MEMORY_BYTES of
    address space and COMPILE_SECONDS. Nothing is executed: the child only calls compile()."""
    if not sources:
        return {}
    over = f"could not be compiled within {COMPILE_MEMORY_BYTES >> 20} MiB and {COMPILE_SECONDS} s"
    try:
        proc = subprocess.run([sys.executable, "-I", "-S", "-c", _COMPILER], input=json.dumps(sources).encode(),
                              capture_output=True, timeout=COMPILE_SECONDS, preexec_fn=_limit_child, check=False)
        result = json.loads(proc.stdout) if proc.returncode == 0 else None
    except (subprocess.TimeoutExpired, ValueError):
        result = None
    if not isinstance(result, dict) or set(result) != set(sources):
        return {name: over for name in sources}
    return {name: None if result[name] is None else str(result[name]) for name in sources}


@contextlib.contextmanager
def staged_output(target: Path) -> Iterator[Path]:
    """A fresh temp folder beside `target` to write into. If the block succeeds, its entries are
    moved into `target` (created if needed); whatever happens, the temp folder is then removed, so
    a failure leaves `target` as it was."""
    if target.exists() and not target.is_dir():
        raise GolfError(f"{target} exists and is not a folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent))
    try:
        yield stage
        target.mkdir(exist_ok=True)
        for entry in sorted(stage.iterdir()):
            os.replace(entry, target / entry.name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
