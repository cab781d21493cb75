"""The self-contained train_gpt.py: deterministic, smaller than its sources, exactly the repo's
sources, and it runs alone (isolated interpreter, empty folder, golf not importable)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import REPO, read_result, run_cli, run_trainer
from golf import budget, embedded, selfcontained
from golf.errors import GolfError
from golf.record.build import verify_packed
from golf.record.logs import parse_log
from golf.record.requirements import requirements_txt, third_party_imports
from golf.record.smoke import golf_importable, isolated_env, smoke_run
from golf.selfcontained import Sources, pack, read_sources, unpack

SCRIPT = REPO / "train_gpt.py"


@pytest.fixture(scope="module")
def sources() -> Sources:
    return read_sources(SCRIPT)


def test_packing_is_deterministic_and_smaller_than_the_sources(sources):
    packed = pack(sources)
    assert packed == pack(read_sources(SCRIPT))
    on_disk = selfcontained.code_files(budget.default_script())
    assert len(packed) < sum(p.stat().st_size for p in on_disk) / 2
    # code_files lists exactly the files the packed train_gpt.py holds.
    assert {p.relative_to(REPO).as_posix() for p in on_disk} == set(sources.files())


def test_embedded_sources_are_byte_identical_to_the_repo(sources):
    embedded = unpack(pack(sources).decode())
    assert embedded == sources
    for name, text in embedded.files().items():
        assert (REPO / name).read_bytes() == text.encode(), name
    assert verify_packed(pack(sources), sources, SCRIPT) == []


def test_a_tampered_packed_file_is_caught(sources):
    modules = dict(sources.modules)
    modules["quant.int8"] += "\n# edited\n"
    tampered = pack(Sources(sources.script, modules, sources.packages))
    problems = verify_packed(tampered, sources, SCRIPT)
    assert problems == ["packed train_gpt.py: embedded quant/int8.py differs from the repo's"]
    assert verify_packed(b"print('not packed')\n", sources, SCRIPT) == ["the packed train_gpt.py has no embedded sources"]


def test_unpack_reads_data_only_and_rejects_a_corrupt_payload(sources):
    assert unpack("print('plain script')\n") is None
    text = pack(sources).decode()
    start = text.index(selfcontained.PAYLOAD_NAME + ' = "') + len(selfcontained.PAYLOAD_NAME) + 4
    with pytest.raises(ValueError, match="not a valid golf payload"):
        unpack(text[:start] + "00000" + text[start + 5:])



@pytest.mark.parametrize("name", ["..evil", "golf./etc/passwd", "golf..x"])
def test_unpack_refuses_module_names_that_are_not_paths_inside(name, tmp_path, capsys):
    hostile = pack(Sources("print(1)\n", {"golf": "", name: "x = 1\n"}, ("golf",)))
    with pytest.raises(ValueError, match="not embedded modules"):
        unpack(hostile.decode())
    (tmp_path / "train_gpt.py").write_bytes(hostile)
    with pytest.raises(GolfError, match="not a valid golf payload"):
        run_cli(["pack", "--unpack", str(tmp_path / "train_gpt.py"), str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def run_packed(tmp_path, sources: Sources) -> subprocess.CompletedProcess:
    (tmp_path / "train_gpt.py").write_bytes(pack(sources))
    return subprocess.run([sys.executable, "-S", "train_gpt.py"], cwd=tmp_path, capture_output=True, text=True,
                          env=isolated_env(sources, tmp_path), timeout=60)


def test_the_bootstrap_serves_modules_from_memory_and_never_falls_back(tmp_path):
    ok = Sources("from golf import util\nprint(util.VALUE, __name__)\nutil.fail()\n",
                 {"golf": "", "golf.util": "VALUE = 42\n\ndef fail():\n    raise RuntimeError('from memory')\n"},
                 ("golf",))
    proc = run_packed(tmp_path, ok)
    assert proc.stdout == "42 __main__\n"
    # Tracebacks show the embedded source lines.
    assert "<golf pack>/golf/util.py" in proc.stderr and "raise RuntimeError('from memory')" in proc.stderr
    missing = Sources("import golf.models\n", {"golf": ""}, ("golf",))
    proc = run_packed(tmp_path, missing)
    assert proc.returncode != 0 and "golf.models is not embedded in this train_gpt.py" in proc.stderr


def test_packed_trainer_has_no_embedded_data(sources, tmp_path):
    (tmp_path / "train_gpt.py").write_bytes(pack(sources))
    env = {**isolated_env(sources, tmp_path), "DATA_PATH": "embedded", "RUN_DIR": str(tmp_path / "run")}
    proc = subprocess.run([sys.executable, "-S", "train_gpt.py"], cwd=tmp_path, capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip() == (
        "train_gpt.py: error: this self-contained train_gpt.py has no embedded data; set DATA_PATH and TOKENIZER_PATH")


def test_requirements_list_third_party_imports_only(sources):
    imports = third_party_imports(sources)
    assert {"torch", "numpy", "sentencepiece", "zstandard"} <= set(imports)
    assert imports.get("brotli") is True  # imported under try/except ImportError: optional
    assert not {"golf", "quant", "json", "os"} & set(imports)
    text = requirements_txt(sources)
    assert "torch==" in text and "# optional: brotli" in text


def test_packed_train_gpt_runs_alone(sources, tmp_path):
    packed = pack(sources)
    env = isolated_env(sources, tmp_path)
    assert not golf_importable(env, tmp_path)  # the isolation the smoke run relies on
    report = smoke_run(packed, sources)
    assert report["steps"] == 2 and report["cwd_files"] == ["train_gpt.py"]
    assert report["bytes_code"] == len(packed) and report["packed_code"] is True
    assert report["source_sha256"] == sources.sha256()


def test_the_trainers_log_is_what_pack_reads(trained_run):
    """The real trainer logs the packed size and the source digest pack compares against."""
    import json

    result = json.loads((trained_run / "result.json").read_text())
    facts = parse_log(trained_run / "train.log")
    sources = read_sources(SCRIPT)
    assert result["bytes_code"] == facts.bytes_code == len(pack(sources))
    assert result["source_sha256"] == facts.source_sha256 == sources.sha256()
    assert facts.bytes_model == result["bytes_model"] and facts.bytes_total == result["bytes_total"]
    assert facts.val_bpb == pytest.approx(result["val_bpb"], abs=1e-8) and facts.seed == result["seed"]
    assert facts.final_label.endswith("_roundtrip_exact")


def test_packed_train_gpt_runs_under_torchrun_with_two_processes(sources, tmp_path):
    """The packed file is what a record ships: DDP (gloo, 2 ranks) must work from it too."""
    script = tmp_path / "packed" / "train_gpt.py"
    script.parent.mkdir()
    script.write_bytes(pack(sources))
    env = {"ITERATIONS": "2", "MAX_WALLCLOCK_SECONDS": "0", "DATA_PATH": str(embedded.shards_dir()),
           "TOKENIZER_PATH": str(embedded.tokenizer_path())}
    proc = run_trainer(tmp_path / "run", env, nproc=2, script=script)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = read_result(tmp_path / "run")
    assert result["world_size"] == 2 and result["steps"] == 2 and result["packed_code"] is True
    assert result["bytes_code"] == script.stat().st_size and result["source_sha256"] == sources.sha256()
