"""`golf pack --check` and `golf score RECORD_DIR`: our record passes, hand-broken copies name each
problem and exit 1, an official-style folder is understood, and nothing in a folder is executed."""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import REPO
from golf.cli import main
from golf.record import build, schema
from golf.record.check import check_record
from golf.selfcontained import Sources, pack, unpack
from recordkit import make_run, packed_now


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    root = tmp_path_factory.mktemp("rec")
    code = packed_now()
    runs = [make_run(root / "runs" / f"s{seed}", seed, code=code) for seed in (1, 2)]
    with pytest.MonkeyPatch.context() as mp:  # the real smoke run is tested in test_pack_selfcontained.py
        mp.setattr(build, "smoke_run", lambda packed, sources, **run: {
            "seconds": 0.1, "steps": 2, "bytes_code": len(packed), "source_sha256": sources.sha256(), "model": run["model"]})
        report = build.pack_record(runs, name="Check me", author="Ada", github_id="ada", track="non_record_16mb",
                                   out=root / "records", script=REPO / "train_gpt.py", artifacts=True)
    assert report["ok"], report["problems"]
    return root / report["folder"]


@pytest.fixture
def copy(record, tmp_path):
    target = tmp_path / "track_non_record_16mb" / record.name
    shutil.copytree(record, target)
    return target


def check_json(capsys, folder) -> tuple[int, dict]:
    code = main(["pack", "--check", str(folder), "--json"])
    return code, json.loads(capsys.readouterr().out)


def edit_json(path, **changes):
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def test_our_record_passes(record, capsys):
    code, report = check_json(capsys, record)
    assert code == 0 and report["ok"] and report["problems"] == [] and report["packed"]
    assert report["ledger"]["model_source"] == "artifacts"
    sub = json.loads((record / "submission.json").read_text())
    assert report["ledger"]["bytes_total"] == sub["bytes_total"]
    assert report["source_sha256"] == sub["source_sha256"]


def test_missing_file(copy, capsys):
    (copy / "README.md").unlink()
    code, report = check_json(capsys, copy)
    assert code == 1 and report["problems"] == ["missing required file README.md"]


def test_wrong_field_type(copy, capsys):
    edit_json(copy / "submission.json", bytes_total="12345", seeds=[1, "2"])
    code, report = check_json(capsys, copy)
    assert code == 1
    assert "submission.json: field 'bytes_total' must be int, got str '12345'" in report["problems"]
    assert any("field 'seeds' must be list[int]" in p for p in report["problems"])


def test_over_cap(copy, capsys):
    with (copy / "model_seed1.golf").open("r+b") as f:
        f.truncate(16_000_001)
    code, report = check_json(capsys, copy)
    assert code == 1
    over = report["ledger"]["bytes_total"] - 16_000_000
    assert any(f"over the 16,000,000-byte cap by {over:,} bytes" in p for p in report["problems"])
    assert any("model_seed1.golf is 16,000,001 bytes but train_seed1.log logged" in p for p in report["problems"])


def test_val_bpb_not_matching_the_logs(copy, capsys):
    sub = json.loads((copy / "submission.json").read_text())
    edit_json(copy / "submission.json", val_bpb=sub["val_bpb"] - 0.01)
    code, report = check_json(capsys, copy)
    assert code == 1 and len(report["problems"]) == 1
    assert report["problems"][0].startswith(f"submission.json val_bpb {sub['val_bpb'] - 0.01} is not backed by the logs")


def test_a_log_from_other_code(copy, capsys):
    log = copy / "train_seed2.log"
    log.write_text(log.read_text().replace("source_sha256:", "source_sha256:f" + "0" * 63 + " was:", 1))
    code, report = check_json(capsys, copy)
    assert code == 1 and any("train_seed2.log: the run's sources" in p for p in report["problems"])


def test_every_problem_is_listed(copy, capsys):
    (copy / "train_seed1.log").unlink()
    edit_json(copy / "submission.json", author=7)
    (copy / "train_gpt.py").write_text("def broken(:\n")
    code, report = check_json(capsys, copy)
    problems = "\n".join(report["problems"])
    assert code == 1
    for phrase in ("field 'author' must be str", "train_gpt.py does not compile", "seed_results['1']: no log of seed 1",
                   "logged code size"):
        assert phrase in problems


def test_check_never_executes_the_folder(copy, capsys, tmp_path):
    marker = tmp_path / "executed"
    (copy / "train_gpt.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\nimport os\nos.system('touch {marker}')\n")
    (copy / "sitecustomize.py").write_text(f"open({str(marker)!r}, 'w')\n")
    main(["pack", "--check", str(copy)])
    main(["score", str(copy), "--no-progress", "--json"])
    capsys.readouterr()
    assert not marker.exists()


def test_symlinks_are_refused(copy, capsys, tmp_path):
    (tmp_path / "secret").write_text("x")
    (copy / "extra.txt").symlink_to(tmp_path / "secret")
    code, report = check_json(capsys, copy)
    assert code == 1 and "extra.txt is a symlink; a record holds regular files only" in report["problems"]


def test_not_a_folder_is_bad_input(tmp_path, capsys):
    assert main(["pack", "--check", str(tmp_path / "nope")]) == 2
    assert "is not a folder" in capsys.readouterr().err


OFFICIAL_SCRIPT = "# " + "the official baseline is 1126 lines\n# " * 100 + '''import os
code = open(__file__).read()
def log0(msg): print(msg)
log0(f"Serialized model int8+zlib: {123} bytes")
log0(f"final_int8_zlib_roundtrip_exact val_loss:{1.0:.8f} val_bpb:{2.0:.8f}")
'''


def official_folder(root, code_size_delta: int = 0):
    """A record laid out like the official NaiveBaseline: plain train_gpt.py, its log (which starts
    with the script's own source), the nine legacy submission.json keys, no artifact."""
    folder = root / "track_10min_16mb" / "2026-03-17_NaiveBaseline"
    folder.mkdir(parents=True)
    (folder / "train_gpt.py").write_text(OFFICIAL_SCRIPT)
    code = len(OFFICIAL_SCRIPT.encode()) + code_size_delta
    model = 15_815_847
    (folder / "train.log").write_text(OFFICIAL_SCRIPT + "=" * 100 + "\n" + "\n".join([
        "val_loader:shards pattern=./data/fineweb_val_*.bin tokens:63779840", "seed:1337",
        "step:13780/20000 val_loss:2.0606 val_bpb:1.2172 train_time:600038ms step_avg:43.54ms",
        "stopping_early: wallclock_cap train_time:600038ms step:13780/20000",
        "Serialized model: 67224983 bytes", f"Code size: {code} bytes", f"Total submission size: {67224983 + code} bytes",
        f"Serialized model int8+zlib: {model} bytes (payload:17178912 raw_torch:17224025 payload_ratio:3.91x)",
        f"Total submission size int8+zlib: {model + code} bytes",
        "final_int8_zlib_roundtrip val_loss:2.0727 val_bpb:1.2244 eval_time:1401ms",
        "final_int8_zlib_roundtrip_exact val_loss:2.07269931 val_bpb:1.22436570", ""]))
    (folder / "submission.json").write_text(json.dumps({
        "author": "Baseline", "github_id": "openai", "name": "Naive Baseline", "blurb": "int8 + zlib",
        "date": "2026-03-18T14:56:29Z", "val_loss": 2.07269931, "val_bpb": 1.2243657,
        "bytes_total": model + len(OFFICIAL_SCRIPT.encode()), "bytes_code": len(OFFICIAL_SCRIPT.encode())}))
    (folder / "README.md").write_text("# Naive baseline\n")
    return folder


def test_an_official_style_record_passes(tmp_path, capsys):
    folder = official_folder(tmp_path)
    code, report = check_json(capsys, folder)
    assert code == 0, report["problems"]
    assert report["ledger"]["bytes_code"] == len(OFFICIAL_SCRIPT.encode())
    assert report["ledger"]["bytes_model_max"] == 15_815_847 and report["ledger"]["model_source"] == "logs"
    assert report["logs"][0]["val_bpb"] == 1.2243657 and report["logs"][0]["label"] == "final_int8_zlib_roundtrip_exact"


def test_an_official_record_whose_logged_code_is_not_what_ships(tmp_path, capsys):
    """The run used another version of the file: real, but not disqualifying (a warning) in a
    folder golf did not write; in golf's own records the same mismatch is an error."""
    folder = official_folder(tmp_path, code_size_delta=-1000)
    code, report = check_json(capsys, folder)
    assert code == 0 and any(w.startswith("train.log: logged code size") and "the run used another file" in w
                             for w in report["warnings"]), report


def test_files_the_code_reads_are_counted(tmp_path, capsys):
    folder = official_folder(tmp_path)
    (folder / "train_gpt.py").write_text(OFFICIAL_SCRIPT + "import lossless_caps\n")
    (folder / "lossless_caps.py").write_text("x = 1\n" * 100)
    report = check_record(folder)
    assert report["ledger"]["bytes_other"] == {"lossless_caps.py": 600}
    assert report["ledger"]["bytes_total"] == len(OFFICIAL_SCRIPT) + len("import lossless_caps\n") + 600 + 15_815_847



def test_files_the_embedded_sources_read_are_counted(record, tmp_path):
    """A packed train_gpt.py runs its embedded modules too: a file they name is code."""
    folder = tmp_path / record.parent.name / record.name
    shutil.copytree(record, folder)
    sources = unpack((folder / "train_gpt.py").read_text())
    modules = {**sources.modules, "golf.extra": "TABLE = open('bigram_table.bin', 'rb').read()\n"}
    (folder / "train_gpt.py").write_bytes(pack(Sources(sources.script, modules, sources.packages)))
    (folder / "bigram_table.bin").write_bytes(b"\0" * 1000)
    report = check_record(folder)
    assert report["ledger"]["bytes_other"] == {"bigram_table.bin": 1000}
    # submission.json claimed the total without that file: the check says by how much.
    total = report["ledger"]["bytes_total"]
    assert any(p.startswith("submission.json bytes_total is") and p.endswith(f"the folder ships {total:,}")
               for p in report["problems"]), report["problems"]


def test_schema_doc_is_the_schema():
    doc = (REPO / "docs" / "submission-schema.md").read_text()
    assert schema.markdown_table() in doc


def test_golf_score_rescores_the_records_artifacts(record, capsys):
    code = main(["score", str(record), "--json", "--no-progress"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["ok"] and len(report["rescored"]) == 2
    assert all(r["agrees"] for r in report["rescored"])


def test_golf_score_catches_a_claim_the_artifact_does_not_support(copy, capsys):
    sub = json.loads((copy / "submission.json").read_text())
    sub["seed_results"]["1"]["val_bpb"] -= 0.5
    (copy / "submission.json").write_text(json.dumps(sub))
    log = copy / "train_seed1.log"  # forge the log too, so that only re-scoring can tell
    real = f"{sub['seed_results']['1']['val_bpb'] + 0.5:.8f}"
    log.write_text(log.read_text().replace(f"val_bpb:{real}", f"val_bpb:{sub['seed_results']['1']['val_bpb']:.8f}"))
    mean = (sub["seed_results"]["1"]["val_bpb"] + sub["seed_results"]["2"]["val_bpb"]) / 2
    edit_json(copy / "submission.json", val_bpb=mean)
    assert check_record(copy)["ok"]
    code = main(["score", str(copy), "--json", "--no-progress"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1 and [r["agrees"] for r in report["rescored"]] == [False, True]


RECORDS = sorted(p for p in (REPO / "records").glob("track_*/*") if p.is_dir())


def test_the_repo_has_a_record():
    assert RECORDS, "records/ should hold at least the CPU smoke record made by golf pack"


@pytest.mark.parametrize("folder", RECORDS, ids=lambda p: p.name)
def test_the_repos_records_pass_their_check(folder, capsys):
    code, report = check_json(capsys, folder)
    assert code == 0 and report["ok"], report["problems"]
    assert report["packed"] and report["ledger"]["bytes_total"] <= 16_000_000


def _drop_readme(folder):
    (folder / "README.md").unlink()
    return "missing required file README.md"


def _string_bpb(folder):
    edit_json(folder / "submission.json", val_bpb="2.6")
    return "submission.json: field 'val_bpb' must be number, got str '2.6'"


def _over_cap(folder):
    with (folder / "train_gpt.py").open("r+b") as f:
        f.truncate(16_000_001)
    return "over the 16,000,000-byte cap by"


def _bpb_off(folder):
    sub = json.loads((folder / "submission.json").read_text())
    edit_json(folder / "submission.json", val_bpb=sub["val_bpb"] + 0.001)
    return "is not backed by the logs"


@pytest.mark.parametrize("damage", [_drop_readme, _string_bpb, _over_cap, _bpb_off], ids=lambda f: f.__name__)
def test_hand_broken_copies_of_the_repos_record(damage, tmp_path, capsys):
    assert RECORDS
    folder = tmp_path / RECORDS[0].parent.name / RECORDS[0].name
    shutil.copytree(RECORDS[0], folder)
    expected = damage(folder)
    code, report = check_json(capsys, folder)
    assert code == 1 and any(expected in p for p in report["problems"]), report["problems"]
