"""Hostile inputs (issue 11): every case class the issue lists, as a table.

Each row names a case class from the issue's "Why" list, builds the hostile input in a fresh
folder, runs the public entry point (`golf ...` or `train_gpt.py`) and checks: the exit code, one
line of output naming the cause (the whole of stderr for a refusal; one PROBLEM line for a record
check), and that nothing in the folder was left behind or overwritten. The fuzzer's fast slice
and the two decompression bombs (with their measured peak memory) follow the table.
"""

from __future__ import annotations

import errno
import importlib.util
import json
import math
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

import quant
from conftest import REPO, TINY_TRAIN_ENV
from golf import embedded, models
from golf.cli import main
from golf.commands import emit_json
from golf.errors import GolfError
from golf.launch import train_env
from golf.record.check import check_record
from golf.score import score_artifact

_spec = importlib.util.spec_from_file_location("fuzz_artifacts", REPO / "bench" / "fuzz_artifacts.py")
fuzz = sys.modules.setdefault("fuzz_artifacts", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(fuzz)

RECORD = REPO / "records" / "track_non_record_16mb" / "2026-12-02_CPU_Smoke_Demo_3Seeds"
TINY = dict(vocab_size=1024, num_layers=1, model_dim=32, num_heads=4, num_kv_heads=2)
GiB = 1 << 30


# ----------------------------------------------------------------------------- building hostile inputs


def artifact(path: Path, edit: Callable[[dict], object] | None = None, *, rule: str = "int8",
             poison: float | None = None) -> Path:
    """A tiny valid artifact; `edit` changes its parsed manifest (or returns the manifest text to
    use instead); `poison` fills the weights with one value. The result is always correctly signed."""
    torch.manual_seed(0)
    model = models.build("ar", TINY)
    state = model.state_dict()
    if poison is not None:
        state = {k: torch.full_like(v, poison) for k, v in state.items()}
    meta = {"model": {"variant": "ar", "config": model.config_dict()},
            "tokenizer": {"name": "fineweb_1024_bpe.model", "sha256": embedded.EMBEDDED_TOKENIZER_SHA256,
                          "vocab_size": 1024}, "eval": {"seq_len": 64}}
    data = quant.encode_artifact(state, rule=rule, roles=model.checked_roles(), meta=meta)
    if edit is not None:
        body = fuzz.unframe(data).body
        manifest, payload = fuzz.split_body(body)
        text = edit(manifest)
        text = text if isinstance(text, bytes) else json.dumps(manifest).encode()
        body = fuzz.join_body(text, payload)
        data = fuzz.frame("zstd-22", quant.compress("zstd-22", body), len(body))
    path.write_bytes(data)
    return path


def config(**changes) -> Callable[[dict], None]:
    return lambda m: m["meta"]["model"]["config"].update(changes)


def record(tmp: Path) -> Path:
    folder = tmp / "track_non_record_16mb" / RECORD.name
    folder.mkdir(parents=True)
    for f in RECORD.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    return folder


def edited_record(tmp: Path, change: Callable[[Path], None]) -> Path:
    folder = record(tmp)
    change(folder)
    return folder


def sparse(path: Path, size: int) -> Path:
    """A file of `size` bytes that takes no disk space (a hole): enough to test size checks."""
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def edit_submission(folder: Path, **changes) -> None:
    data = json.loads((folder / "submission.json").read_text())
    data.update(changes)
    (folder / "submission.json").write_text(json.dumps(data))


def docs(path: Path, n: int, bad_line_at: int | None = None) -> Path:
    lines = [json.dumps({"text": f"document number {i} says hello to the golf world. " * 20}) for i in range(n)]
    if bad_line_at is not None:
        lines.insert(bad_line_at, "{not json")
    path.write_text("\n".join(lines) + "\n")
    return path


def packed_script(tmp: Path) -> Path:
    from golf.selfcontained import pack, read_sources
    path = tmp / "packed_train_gpt.py"
    path.write_bytes(pack(read_sources(REPO / "train_gpt.py")))
    return path


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def mkdir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def write_model(prefix: Path) -> Path:
    (prefix.parent / f"{prefix.name}.model").write_bytes(embedded.tokenizer_path().read_bytes())
    return prefix


def scores_finite(path: Path) -> None:
    report = score_artifact(path, data=embedded.shards_dir(), tokenizer=embedded.tokenizer_path(), max_tokens=4096,
                            progress=False)
    assert math.isfinite(report["val_bpb"]) and report["val_bpb"] > 0


def counts_no_passwd(tmp: Path) -> None:
    report = check_record(tmp / "track_non_record_16mb" / RECORD.name)
    assert report["ledger"]["bytes_other"] == {} and any("passwd" in p for p in report["problems"])


def symlink_passwd(folder: Path) -> None:
    (folder / "passwd").symlink_to("/etc/passwd")
    code = (folder / "train_gpt.py").read_text()
    (folder / "train_gpt.py").write_text(code + '\nSECRETS = "passwd"\n')


# ----------------------------------------------------------------------------- the table


@dataclass
class Run:
    argv: list[str]  # golf's arguments, or env overrides for the trainer (as KEY=VALUE)
    kind: str = "golf"  # golf (in process) | golf-proc (a child: may hang or need limits) | trainer
    file_size_limit: int | None = None  # RLIMIT_FSIZE for the child: writes past it fail (EFBIG)
    unreadable: Path | None = None  # opening this path fails with EACCES (we may run as root: chmod won't do)


@dataclass
class Case:
    name: str  # the case class, in the issue's words
    build: Callable[[Path], Run]
    code: int
    line: str  # what the one line says
    creates: set[str] = field(default_factory=set)  # files the run may add (relative to its folder)
    then: Callable[[Path], None] | None = None  # a further check on what the run left


def golf(*argv: object) -> Run:
    return Run([str(a) for a in argv])


def score(path: Path, *more: object) -> Run:
    return golf("score", path, "--max-tokens", 4096, "--no-progress", *more)


def trainer(tmp: Path, **env: str) -> Run:
    return Run([f"RUN_DIR={tmp / 'run'}", *(f"{k}={v}" for k, v in env.items())], kind="trainer")


CASES = [
    # Memory is not bounded.
    Case("a 1 GiB bomb (small file, huge declared body)",
         lambda t: score(write(t / "b.golf", fuzz.bomb(GiB))), 2, "body declares 1,073,7"),
    Case("a 64 GiB bomb", lambda t: score(write(t / "b.golf", fuzz.bomb(64 * GiB))), 2, "body declares 68,719,"),
    Case("a model config allocated before it is checked (model_dim=30000)",
         lambda t: score(artifact(t / "a.golf", config(model_dim=30000, num_heads=4))), 2,
         "the config implies 6,330,840,004 parameters"),
    Case("golf score RECORD_DIR with a 3 GB submission.json",
         lambda t: golf("score", edited_record(t, lambda f: sparse(f / "submission.json", 3 * 10**9)),
                        "--no-progress"), 1, "submission.json is 3,000,000,000 bytes; golf reads at most"),
    Case("golf score RECORD_DIR with a 3 GB .golf",
         lambda t: golf("score", edited_record(t, lambda f: sparse(f / "model_seed1.golf", 3 * 10**9)),
                        "--no-progress"), 1, "model_seed1.golf cannot be scored: artifact"),
    Case("a FIFO named model_seed7.golf (golf score RECORD_DIR must not hang)",
         lambda t: Run(["score", str(edited_record(t, lambda f: os.mkfifo(f / "model_seed7.golf"))), "--no-progress"],
                       kind="golf-proc"), 1, "model_seed7.golf is not a regular file"),
    Case("a 60 MB train_gpt.py inside --check",
         lambda t: golf("pack", "--check", edited_record(t, lambda f: sparse(f / "train_gpt.py", 60 * 10**6))), 1,
         "train_gpt.py is 60,000,000 bytes; golf reads at most 16,000,000; not compiling it"),
    # Tracebacks instead of one line.
    Case("an unhashable dtype in the manifest",
         lambda t: score(artifact(t / "a.golf", lambda m: m["tensors"]["tok_emb.weight"].update(dtype=[]))), 2,
         "unknown dtype '[]'"),
    Case("a non-string tokenizer sha",
         lambda t: score(artifact(t / "a.golf", lambda m: m["meta"]["tokenizer"].update(sha256=5))), 2,
         "artifact records no tokenizer sha256"),
    Case("a state-dict size mismatch (config and tensors disagree)",
         lambda t: score(artifact(t / "a.golf", config(mlp_mult=3))), 2, "artifact tensors do not match variant 'ar'"),
    Case("heads that do not divide the width",
         lambda t: score(artifact(t / "a.golf", config(num_heads=3))), 2, "num_heads 3 must divide model_dim 32"),
    Case("negative dims", lambda t: score(artifact(t / "a.golf", config(model_dim=-32))), 2,
         "model_dim must be >= 1, got -32"),
    Case("softcap <= 0", lambda t: score(artifact(t / "a.golf", config(logit_softcap=0.0))), 2,
         "logit_softcap (0.0) must be > 0"),
    Case("deep JSON in the manifest (RecursionError)",
         lambda t: score(artifact(t / "a.golf", lambda m: json.dumps(m).replace('"eval"', '"x":' + "[" * 100_000
                                                                         + "]" * 100_000 + ',"eval"', 1).encode())),
         2, "manifest nests 100002 levels deep; golf parses at most 32"),
    Case("deep JSON in submission.json",
         lambda t: golf("pack", "--check", edited_record(t, lambda f: (f / "submission.json").write_text(
             "[" * 100_000 + "]" * 100_000))), 1, "nests 100000 levels deep; golf parses at most 32"),
    Case("deeply nested expressions in a script",
         lambda t: golf("pack", "--check", edited_record(t, lambda f: (f / "train_gpt.py").write_text(
             "x = a" + "[0]" * 300_000 + "\n"))), 1, "train_gpt.py does not compile: "),
    Case("an unreadable file (PermissionError)",
         lambda t: Run(["score", str(artifact(t / "a.golf"))], unreadable=t / "a.golf"), 2,
         "cannot open artifact"),
    Case("--out naming a file",
         lambda t: golf("data", "build", docs(t / "d.jsonl", 3), "--out", write(t / "f", b"x"), "--val-docs", 1,
                        "--no-progress"), 2, "exists and is not a folder"),
    Case("a full disk while writing (--unpack under a file-size limit)",
         lambda t: Run(["pack", "--unpack", str(packed_script(t)), str(t / "out")], kind="golf-proc",
                       file_size_limit=4096), 2, "File too large"),
    Case("--seq-len -1", lambda t: score(artifact(t / "a.golf"), "--seq-len", -1), 2,
         "--seq-len must be a positive number, got -1"),
    Case("a seed_results key '²'",
         lambda t: golf("pack", "--check", edited_record(t, lambda f: edit_submission(
             f, seed_results={"²": {"val_bpb": 2.45}}))), 1, "seed_results['²']: no log of seed ² is in the folder"),
    # NaN passes as a score.
    Case("an artifact that scores NaN, with --json",
         lambda t: score(artifact(t / "a.golf", rule="fp32", poison=float("nan")), "--json"), 2,
         "val_bpb is nan: not a finite number"),
    Case("a log saying val_bpb:nan while submission.json claims 0.5",
         lambda t: golf("pack", "--check", edited_record(t, lambda f: (f / "train_seed1.log").write_text(
             (f / "train_seed1.log").read_text() + "final_int8_zstd22_roundtrip_exact val_loss:nan val_bpb:nan\n")),
                        "--json"),
         1, "train_seed1.log: final_int8_zstd22_roundtrip_exact logs val_loss nan val_bpb nan, not a finite number"),
    Case("a diverged run (TIED_EMBED_LR=1e30) exits 0 with NaN",
         lambda t: trainer(t, TIED_EMBED_LR="1e30", ITERATIONS="2", MAX_WALLCLOCK_SECONDS="0"), 1,
         "non-finite val_bpb of the trained weights after step 2 (nan); stopped, the last good weights (step 1)",
         {"run", "run/train.log", "run/metrics.jsonl", "run/model_lastgood.golf"},
         then=lambda t: scores_finite(t / "run/model_lastgood.golf")),
    Case("a NaN from the quantizer, not the training (QUANT=fp16, weights past fp16's range)",
         lambda t: trainer(t, QUANT="fp16", TIED_EMBED_INIT_STD="1e5", ITERATIONS="0"), 1,
         "non-finite val_bpb of the fp16+zstd-22 artifact (nan); stopped, the last good weights (step 0)",
         {"run", "run/train.log", "run/metrics.jsonl", "run/model.golf", "run/model_raw.golf",
          "run/model_lastgood.golf"},
         then=lambda t: scores_finite(t / "run/model_lastgood.golf")),
    Case("QK_GAIN_INIT=nan", lambda t: trainer(t, QK_GAIN_INIT="nan"), 2,
         "qk_gain_init must be a finite fp32 number, got nan"),
    # Runaway and clobbering.
    Case("ITERATIONS=-1 MAX_WALLCLOCK_SECONDS=0 never stops",
         lambda t: trainer(t, ITERATIONS="-1", MAX_WALLCLOCK_SECONDS="0"), 2,
         "ITERATIONS=-1 with no MAX_WALLCLOCK_SECONDS cap: the run would never stop"),
    Case("GRAD_ACCUM_STEPS=-1 trains nothing", lambda t: trainer(t, GRAD_ACCUM_STEPS="-1"), 2,
         "GRAD_ACCUM_STEPS=-1 must be >= 0"),
    Case("a RUN_DIR holding an empty train.log",
         lambda t: (write(mkdir(t / "run") / "train.log", b""), trainer(t))[1], 1, "is not empty"),
    Case("a RUN_DIR that is a record folder",
         lambda t: Run([f"RUN_DIR={record(t)}"], kind="trainer"), 1, "is not empty"),
    Case("golf data tokenizer --out over an existing model",
         lambda t: golf("data", "tokenizer", docs(t / "d.jsonl", 50), "--out", write_model(t / "tok"),
                        "--vocab-size", 300, "--no-progress"), 2, "tok.model or tok.vocab already exists"),
    Case("--unpack leaving partial output after a failure",
         lambda t: Run(["pack", "--unpack", str(packed_script(t)), str(mkdir(t / "out"))], kind="golf-proc",
                       file_size_limit=8192), 2, "File too large"),
    Case("data build leaving partial output after a failure",
         lambda t: golf("data", "build", docs(t / "d.jsonl", 40, bad_line_at=30), "--out", t / "shards",
                        "--val-docs", 5, "--shard-tokens", 1000, "--no-progress"), 2, "d.jsonl:31: bad JSON"),
    Case("the ledger counting a symlinked /etc/passwd",
         lambda t: golf("pack", "--check", edited_record(t, symlink_passwd), "--json"), 1,
         "passwd is a symlink; a record holds regular files only", then=counts_no_passwd),
]


# ----------------------------------------------------------------------------- running a row


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under `root` (symlinks not followed) with what would change if it were rewritten."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            out[path.relative_to(root).as_posix()] = (st.st_mode, st.st_size, st.st_mtime_ns, st.st_ino)
    return out


def _child_limits(file_size_limit: int | None) -> Callable[[], None]:
    def apply() -> None:
        if file_size_limit is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))
    return apply


def execute(run: Run, cwd: Path, capsys, monkeypatch) -> tuple[int, str, str]:
    if run.kind == "golf":
        if run.unreadable is not None:
            real_open = os.open

            def refusing_open(path, *args, **kwargs):
                if Path(path) == run.unreadable:
                    raise PermissionError(errno.EACCES, "Permission denied", str(path))
                return real_open(path, *args, **kwargs)
            monkeypatch.setattr(os, "open", refusing_open)
        code = main(run.argv)
        captured = capsys.readouterr()
        return code, captured.out, captured.err
    if run.kind == "golf-proc":
        cmd = [sys.executable, "-m", "golf", *run.argv]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
    else:
        cmd = [sys.executable, str(REPO / "train_gpt.py")]
        env = train_env(cwd / "run", {**TINY_TRAIN_ENV, **dict(a.split("=", 1) for a in run.argv)})
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=240,
                          preexec_fn=_child_limits(run.file_size_limit))
    return proc.returncode, proc.stdout, proc.stderr


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_input(case: Case, tmp_path, capsys, monkeypatch):
    run = case.build(tmp_path)
    before = snapshot(tmp_path)
    code, out, err = execute(run, tmp_path, capsys, monkeypatch)
    after = snapshot(tmp_path)
    assert code == case.code, (out[-2000:], err[-2000:])
    assert "Traceback" not in out + err
    if case.code == 2 or run.kind == "trainer":  # a refusal or a stopped run: one line on stderr says why
        lines = err.strip().splitlines()
        assert len(lines) == 1 and case.line in lines[0], (out[-500:], err[-2000:])
        assert case.code != 2 or (out == "" and lines[0].startswith(("golf: error: ", "train_gpt.py: error: ")))
    else:  # a record check: one PROBLEM line names it
        lines = [line for line in out.splitlines() if case.line in line]
        assert len(lines) == 1, (out[-2000:], err[-2000:])
    # Nothing left behind, nothing overwritten: every entry as it was, new ones only where expected.
    assert {k: v for k, v in after.items() if k in before} == before
    assert set(after) - set(before) == case.creates
    if case.then is not None:
        case.then(tmp_path)


def test_the_table_names_every_case_class_of_the_issue():
    assert len({c.name for c in CASES}) == len(CASES) == 34


def test_json_output_never_holds_nan(capsys):
    with pytest.raises(GolfError, match="non-finite number"):
        emit_json({"val_bpb": float("nan")})
    assert capsys.readouterr().out == ""


def test_an_error_quoting_a_hostile_key_is_still_one_line(tmp_path, capsys):
    path = artifact(tmp_path / "a.golf", config(**{"evil\nPROBLEM  none": 1}))
    assert main(["score", str(path), "--max-tokens", "4096", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown fields: evil\\nPROBLEM  none" in err


def test_parts_that_overlap_cannot_multiply_the_payload(tmp_path):
    """1,000 copies of the largest tensor's entry, all pointing at the same payload bytes: refused
    before any part is copied out (each copy would otherwise be read and decoded)."""
    def copies(m: dict) -> None:
        entry = m["tensors"]["tok_emb.weight"]
        m["tensors"].update({f"tok_emb.weight{i}": entry for i in range(1000)})
    path = artifact(tmp_path / "a.golf", copies)
    with pytest.raises(quant.ArtifactError, match="parts declare .* bytes in all, more than the"):
        quant.read_artifact(path)


# ----------------------------------------------------------------------------- the fuzzer


def test_fuzzer_fast_slice(tmp_path):
    """A slice of bench/fuzz_artifacts.py (the full run is >= 10,000 cases): signed mutations of
    every kind through `golf score`, each in a memory-capped child, none may fail."""
    out = tmp_path / "fuzz.json"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "fuzz_artifacts.py"), "--cases", "40",
                           "--seed", "11", "--bombs", "2", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    result = json.loads(out.read_text())
    assert result["failures"] == 0, result["failure_examples"]
    assert proc.returncode == 0
    assert result["outcomes"].get("refused", 0) > 0 and result["outcomes"].get("accepted", 0) > 0
    assert all(sum(v.values()) == 10 for v in result["by_kind"].values())
    for bomb in result["bombs"]:
        assert bomb["status"] == "refused" and bomb["peak_rss_mib"] < 512, bomb


# ----------------------------------------------------------------------------- the policy's premises


def test_the_limits_derive_from_the_cap_and_the_schemes():
    from golf.challenge import CAP_BYTES
    from quant import limits

    # quant cannot import golf.challenge, so it states the bound the cap implies; they must agree.
    assert limits.MAX_PARAMS == CAP_BYTES * 8 // limits.MIN_BITS_PER_PARAM
    assert limits.MAX_TENSOR_BYTES == limits.MAX_PARAMS * limits.WIDEST_BYTES_PER_PARAM
    # The premise "no scheme stores a parameter in under one bit": every registered scheme's parts
    # for a 256x256 matrix take at least numel/8 bytes.
    w = torch.randn(256, 256)
    for name in quant.scheme_names():
        if name == "raw":
            continue
        parts = quant.get_scheme(name).encode(w).parts
        assert sum(p.numel() * p.element_size() for p in parts.values()) >= w.numel() / 8, name
