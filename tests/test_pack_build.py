"""`golf pack RUN_DIR ...`: the record folder, and every refusal (over cap, sizes or sources that
disagree with what ships, unsafe names, existing folders). The isolated smoke run is stubbed here;
tests/test_pack_selfcontained.py runs it for real."""

from __future__ import annotations

import json
import math
import os

import pytest

from conftest import REPO, run_cli
from golf.cli import main
from golf.errors import GolfError
from golf.record import build, schema
from golf.selfcontained import Sources, pack, read_sources
from recordkit import make_run, packed_now

NAMES = ["--author", "Ada", "--github-id", "ada", "--track", "non_record_16mb"]


@pytest.fixture(scope="module")
def code():
    return packed_now()


@pytest.fixture(scope="module")
def runs(tmp_path_factory, code):
    root = tmp_path_factory.mktemp("runs")
    return [make_run(root / f"s{seed}", seed, code=code) for seed in (1, 2, 3)]


@pytest.fixture(autouse=True)
def stub_smoke(monkeypatch):
    calls = []

    def fake(packed, sources, *, model, eval_samples):
        calls.append(len(packed))
        return {"seconds": 0.1, "steps": 2, "bytes_code": len(packed), "source_sha256": sources.sha256(),
                "model": model}

    monkeypatch.setattr(build, "smoke_run", fake)
    return calls


def pack_cli(capsys, out, runs, *extra) -> tuple[int, dict]:
    code = main(["pack", *map(str, runs), "--name", "Tiny test", *NAMES, "--out", str(out), "--json", *extra])
    captured = capsys.readouterr()
    return code, json.loads(captured.out) if captured.out.strip() else {"err": captured.err}


def test_pack_writes_a_record_that_passes_its_check(tmp_path, runs, code, capsys, stub_smoke):
    rc, report = pack_cli(capsys, tmp_path, runs, "--baseline", "4.5")
    assert rc == 0 and report["ok"], report
    folder = tmp_path / "track_non_record_16mb" / f"{report['submission']['date']}_Tiny_test"
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "requirements.txt", "submission.json",
                                                        "train_gpt.py", "train_seed1.log", "train_seed2.log",
                                                        "train_seed3.log"]
    assert (folder / "train_gpt.py").read_bytes() == code[0] == pack(read_sources(REPO / "train_gpt.py"))
    assert stub_smoke == [len(code[0])]  # the packed file was run before anything was written
    sub = json.loads((folder / "submission.json").read_text())
    assert schema.validate(sub) == []
    results = [json.loads((r / "result.json").read_text()) for r in runs]
    assert sub["val_bpb"] == pytest.approx(sum(r["val_bpb"] for r in results) / 3)
    assert sub["bytes_total"] == len(code[0]) + max((r / "model.golf").stat().st_size for r in runs)
    assert sub["bytes_code"] == (folder / "train_gpt.py").stat().st_size and sub["source_sha256"] == code[1]
    bytes_per_token = results[0]["bytes"] / results[0]["tokens"]
    expected = 4.5 * math.log(2) * bytes_per_token - sum(r["val_loss"] for r in results) / 3
    assert sub["improvement_nats"] == pytest.approx(expected) and 0 <= sub["p_value"] < 1
    for seed, r in zip((1, 2, 3), runs):
        assert (folder / f"train_seed{seed}.log").read_bytes() == (r / "train.log").read_bytes()
    readme = (folder / "README.md").read_text()
    assert "bytes_total = train_gpt.py + max over seeds" in readme and f"{sub['bytes_total']:,}" in readme
    assert run_cli(["pack", "--check", str(folder)]) == 0
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no temp folders left


def test_pack_refuses_to_overwrite_without_force(tmp_path, runs, capsys):
    assert pack_cli(capsys, tmp_path, runs[:1])[0] == 0
    rc, out = pack_cli(capsys, tmp_path, runs[:1])
    assert rc == 2 and "already exists; pass --force" in out["err"]
    rc, report = pack_cli(capsys, tmp_path, runs[:2], "--force")
    assert rc == 0 and report["submission"]["seeds"] == [1, 2]
    assert len(list((tmp_path / "track_non_record_16mb").iterdir())) == 1


@pytest.mark.parametrize("name,slug", [("../../etc/passwd", "etc_passwd"), ("My run v1.2", "My_run_v1_2"),
                                       ("a/b\\c", "a_b_c")])
def test_names_are_sanitized(name, slug):
    assert build.slug(name) == slug


@pytest.mark.parametrize("name", ["../..", "///", "." * 3, "é" * 4])
def test_names_without_a_safe_slug_are_refused(name):
    with pytest.raises(GolfError, match="no letters or digits"):
        build.slug(name)


def test_traversal_in_a_name_stays_inside_out(tmp_path, runs, capsys):
    code = main(["pack", str(runs[0]), "--name", "../../escape", *NAMES, "--out", str(tmp_path / "records"), "--json"])
    assert code == 0 and json.loads(capsys.readouterr().out)["ok"]
    assert [p.name for p in tmp_path.iterdir()] == ["records"]


def fresh_run(tmp_path, code, seed=7, **overrides):
    return make_run(tmp_path / f"run{seed}", seed, code=code, **overrides)


def assert_refused(capsys, tmp_path, run_dirs, phrase: str) -> dict:
    rc, report = pack_cli(capsys, tmp_path / "out", run_dirs)
    assert rc == 1 and not report["ok"], report
    assert any(phrase in p for p in report["problems"]), report["problems"]
    assert not (tmp_path / "out").exists()  # nothing written
    return report


def test_over_the_cap_is_refused_with_the_overshoot(tmp_path, code, capsys):
    run = fresh_run(tmp_path, code)
    artifact = run / "model.golf"
    size = 16_000_000 - len(code[0]) + 123  # 123 bytes over with the packed code
    with artifact.open("r+b") as f:
        f.truncate(size)
    result = json.loads((run / "result.json").read_text())
    result.update(bytes_model=size, bytes_total=size + len(code[0]))
    (run / "result.json").write_text(json.dumps(result))
    log = (run / "train.log").read_text().splitlines()
    log = [f"Serialized model int8+zstd-22: {size} bytes" if line.startswith("Serialized") else
           f"Total submission size int8+zstd-22: {size + len(code[0])} bytes" if line.startswith("Total") else line
           for line in log]
    (run / "train.log").write_text("\n".join(log) + "\n")
    report = assert_refused(capsys, tmp_path, [run], "over the 16,000,000-byte cap by 123 bytes")
    assert len(report["problems"]) == 1


def test_logged_code_size_must_equal_the_packed_file(tmp_path, code, capsys):
    run = fresh_run(tmp_path, code, bytes_code=len(code[0]) - 1)
    assert_refused(capsys, tmp_path, [run], f"result.json bytes_code is {len(code[0]) - 1}")


def test_runs_trained_with_other_sources_are_refused(tmp_path, code, capsys):
    run = fresh_run(tmp_path, code, source_sha256="0" * 64)
    assert_refused(capsys, tmp_path, [run], "trained with other sources")


def test_a_packed_source_mismatch_is_refused(tmp_path, runs, capsys, monkeypatch):
    real_pack = build.pack

    def stale(sources):  # a packer that embeds something other than the repo's sources
        return real_pack(Sources(sources.script, {**sources.modules, "quant.int8": "# stale\n"}, sources.packages))

    monkeypatch.setattr(build, "pack", stale)
    rc, report = pack_cli(capsys, tmp_path / "out", runs[:1])
    assert rc == 1 and "packed train_gpt.py: embedded quant/int8.py differs from the repo's" in report["problems"]
    assert not (tmp_path / "out").exists()


def test_a_failed_smoke_run_writes_nothing(tmp_path, runs, capsys, monkeypatch):
    def broken(packed, sources, **_):
        raise GolfError("the packed train_gpt.py failed when run alone (exit 1): ImportError")

    monkeypatch.setattr(build, "smoke_run", broken)
    assert_refused(capsys, tmp_path, runs[:1], "failed when run alone")


def test_ten_minute_track_needs_gpu_runs(tmp_path, runs, capsys):
    rc, report = pack_cli(capsys, tmp_path, runs[:1], "--track", "10min_16mb")
    assert rc == 1 and any("8×H100" in p for p in report["problems"])


def test_bad_input_is_a_one_line_error(tmp_path, runs, capsys):
    assert main(["pack", str(runs[0]), "--name", "x", "--author", "A", "--out", str(tmp_path)]) == 2
    assert "needs --github-id, --track" in capsys.readouterr().err
    assert main(["pack", str(tmp_path / "nope"), "--name", "x", *NAMES, "--out", str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err
    rc, out = pack_cli(capsys, tmp_path, [runs[0], runs[0]])
    assert rc == 2 and "same seed" in out["err"]
    rc, out = pack_cli(capsys, tmp_path, runs[:1], "--baseline", "not-a-number")
    assert rc == 2 and "neither a val_bpb number nor a record folder" in out["err"]


def test_baseline_from_a_record_folder_uses_its_seeds(tmp_path, runs, capsys):
    rc, first = pack_cli(capsys, tmp_path / "a", runs)
    folder = first["folder"]
    rc, report = pack_cli(capsys, tmp_path / "b", runs, "--baseline", folder)
    sig = report["significance"]
    assert rc == 0 and sig["baseline_seeds"] == 3 and "Welch" in sig["test"]
    assert sig["improvement_nats"] == pytest.approx(0.0, abs=1e-7) and not sig["passes"]  # logs keep 8 decimals


def test_help_teaches_the_ledger_and_exit_codes(capsys):
    with pytest.raises(SystemExit):
        main(["pack", "--help"])
    out = capsys.readouterr().out
    for phrase in ("bytes_total = train_gpt.py + max over seeds", "0.005 nats", "exit codes", "--check"):
        assert phrase in out


def test_unpack_writes_the_sources(tmp_path, code, capsys):
    (tmp_path / "train_gpt.py").write_bytes(code[0])
    assert main(["pack", "--unpack", str(tmp_path / "train_gpt.py"), str(tmp_path / "src")]) == 0
    assert (tmp_path / "src" / "quant" / "int8.py").read_bytes() == (REPO / "quant" / "int8.py").read_bytes()
    assert os.listdir(tmp_path / "src" / "golf")
