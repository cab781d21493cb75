"""`golf pack --check` on folders laid out the ways real records are: hand-written fixtures for each
log dialect, naming convention and defect (none copied from a record), checked for the grade each
finding gets: errors fail the check, warnings and notes do not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from golf.challenge import CAP_BYTES, EVAL_SECONDS, GPUS, TRAIN_SECONDS
from golf.cli import main
from golf.record import codesize
from golf.record.check import check_record
from golf.record.logs import parse_log

CLOCK_MS = int(TRAIN_SECONDS * 1000)
SCRIPT = "import os\n\n\ndef main():\n    '''Train.'''\n    print(os.environ.get('SEED', '1'))\n\n\nmain()\n"
SOURCE_ECHO = '''import os
seed = int(os.environ.get("SEED", 1337))
log0(f"seed:{seed}")
log0(f"step:{step}/{iters} val_loss:{loss:.4f} val_bpb:{bpb:.4f} train_time:{ms:.0f}ms")
log0(f"final_int8_zlib_roundtrip_exact val_loss:{loss:.8f} val_bpb:{bpb:.8f}")
torch.manual_seed(seed=7)
'''


def baseline_log(seed: int, bpb: float, *, model: int = 15_000_000, code: int = len(SCRIPT), world: int = GPUS,
                 train_ms: int = CLOCK_MS + 40, step_avg: float = 50.0, stopped: bool = True,
                 extra: tuple[str, ...] = ()) -> str:
    """The March dialect: the script's source first, `seed:N`, `step:` lines, `…_exact` finals."""
    steps = int(train_ms / step_avg)
    lines = [SOURCE_ECHO, "=" * 100, f"world_size:{world} grad_accum_steps:1", f"seed:{seed}",
             f"step:1/20000 train_loss:6.9 train_time:50ms step_avg:{step_avg:.2f}ms",
             f"step:{steps}/20000 val_loss:2.0 val_bpb:1.2 train_time:{train_ms}ms step_avg:{step_avg:.2f}ms"]
    if stopped:
        lines.append(f"stopping_early: wallclock_cap train_time:{train_ms}ms step:{steps}/20000")
    lines += ["Serialized model: 67224983 bytes", f"Code size: {code} bytes",
              f"Serialized model int8+zlib: {model} bytes (payload:1 raw_torch:1 payload_ratio:3.91x)",
              f"Total submission size int8+zlib: {model + code} bytes",
              f"final_int8_zlib_roundtrip val_loss:{bpb * 1.7:.4f} val_bpb:{bpb:.4f} eval_time:1400ms",
              f"final_int8_zlib_roundtrip_exact val_loss:{bpb * 1.7:.8f} val_bpb:{bpb:.8f}", *extra]
    return "\n".join(lines) + "\n"


def dump_log(seed: int, bpb: float, *, model: int = 15_900_000, code: int = 30_000, source: int = len(SCRIPT),
             world: int = GPUS, eval_s: float = 400.0, stamp: bool = False) -> str:
    """The April dialect: indented hyperparameter dump, `N/M val_loss: X` steps, compressed code
    size, a TTT score, total_eval_time; optionally every line timestamp-prefixed."""
    lines = ["Hyperparameters:", f"  max_wallclock_seconds: {TRAIN_SECONDS}", f"  seed: {seed}",
             f"  world_size: {world}",
             "0/20000 val_loss: 9.0052 val_bpb: 3.4862",
             "1/20000 train_loss: 9.0086 train_time: 0.0m tok/s: 8101558",
             "4900/20000 val_loss: 2.3541 val_bpb: 1.0757",
             f"stopping_early: wallclock_cap train_time: {CLOCK_MS - 12_000}ms step: 4900/20000",
             "diagnostic pre-quantization post-ema val_loss:2.33 val_bpb:1.064 eval_time:7000ms",
             "Serialized model: 135417533 bytes", f"Code size (uncompressed): {source} bytes",
             f"Code size (compressed): {code} bytes", f"Serialized model quantized+brotli: {model} bytes",
             f"Total submission size quantized+brotli: {model + code} bytes",
             "diagnostic quantized val_loss:2.35 val_bpb:1.074 eval_time:60000ms",
             f"quantized_ttt_phased val_loss:{bpb * 2.19:.8f} val_bpb:{bpb:.8f} eval_time:{eval_s * 1000:.0f}ms",
             f"total_eval_time:{eval_s:.1f}s"]
    if stamp:
        lines = [f"{1776142360 + i}.{i:03d} {line}" for i, line in enumerate(lines)]
    return "\n".join(lines) + "\n"


def kv_log(seed: int, bpb: float, *, total: int = 15_990_000, code: int = len(SCRIPT)) -> str:
    """A `key=value` dump, `t:`/`avg:` steps, `budget:` and `artifact:…MB … code:` size lines."""
    return "\n".join([
        f"activation_type=relu2 adam_eps=1e-08 adam_lr=0.05 data_path=./data seed={seed} warmup_steps=5",
        f"params:73685840 L:10 d:768 h:8 kv:4 ws:{GPUS} ga:1 s:{seed}",
        "step:1000/10000 loss:3.3120 t:91478ms avg:91.5ms",
        f"step:6530/10000 val_loss:3.0517 val_bpb:1.1816 train_time:{CLOCK_MS - 400}ms zero_frac:0.336",
        f"stopping_early: wallclock_cap train_time:{CLOCK_MS - 400}ms step:6530/10000",
        f"artifact:{(total - code) / 1e6:.2f}MB ternary:64880640(14245920B) fp:2513744(2537376B) code:{code}",
        f"budget:{total}/{CAP_BYTES} ({total / 1e6:.2f}/{CAP_BYTES / 1e6:.2f}MB) FITS",
        "final_ternary_roundtrip val_loss:3.0577 val_bpb:1.1839",
        f"final_sliding val_loss:{bpb * 2.58:.4f} val_bpb:{bpb:.4f} (stride=16, T=0.90) eval_time:428712ms", ""])


def make_folder(root: Path, logs: dict[str, str], submission: dict | None = None, *, track: str = "10min_16mb",
                script: tuple[str, str] | None = ("train_gpt.py", SCRIPT), readme: str = "# A record\n",
                submission_name: str = "submission.json") -> Path:
    folder = root / f"track_{track}" / "2026-04-01_Fixture"
    folder.mkdir(parents=True)
    for name, text in logs.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    if script is not None:
        (folder / script[0]).write_text(script[1])
    (folder / "README.md").write_text(readme)
    if submission is not None:
        (folder / submission_name).write_text(json.dumps(submission))
    return folder


def sub(**claims) -> dict:
    return {"author": "Ada", "github_id": "ada", "name": "Fixture", "date": "2026-04-01", **claims}


BPBS = {1337: 1.12345678, 42: 1.12445678, 7: 1.12145678}
MEAN = sum(BPBS.values()) / 3


def three_seeds(maker=baseline_log, **kw) -> dict[str, str]:
    return {f"train_seed{seed}.log": maker(seed, bpb, **kw) for seed, bpb in BPBS.items()}


def has(messages: list[str], phrase: str) -> bool:
    return any(phrase in m for m in messages)


# ---- the log dialects, parsed -------------------------------------------------------------------

def test_baseline_dialect_ignores_the_echoed_source(tmp_path):
    (tmp_path / "train.log").write_text(baseline_log(42, 1.2, extra=("final_ttt_lora val_loss:2.01 val_bpb:1.19 "
                                                                      "eval_time:60000ms",)))
    f = parse_log(tmp_path / "train.log")
    assert f.seeds == (42,) and f.world_sizes == (GPUS,) and f.stopped_early and f.trained
    assert f.train_time_ms == CLOCK_MS + 40 and f.step_avg_ms == 50.0
    assert (f.bytes_model, f.bytes_code, f.bytes_total) == (15_000_000, len(SCRIPT), 15_000_000 + len(SCRIPT))
    assert [s.label for s in f.scores] == ["final_int8_zlib_roundtrip", "final_int8_zlib_roundtrip_exact",
                                           "final_ttt_lora"]
    assert f.final_label == "final_int8_zlib_roundtrip_exact" and f.val_bpb == 1.2  # golf's final: the exact line
    assert f.scores[-1].eval_ms == 60000.0


@pytest.mark.parametrize("stamp", [False, True], ids=["plain", "timestamped"])
def test_hyperparameter_dump_dialect(tmp_path, stamp):
    (tmp_path / "train0.txt").write_text(dump_log(0, 1.07216564, stamp=stamp))
    f = parse_log(tmp_path / "train0.txt")
    assert f.seeds == (0,) and f.world_sizes == (GPUS,) and f.train_time_ms == CLOCK_MS - 12_000
    assert (f.bytes_code, f.bytes_code_uncompressed, f.bytes_model) == (30_000, len(SCRIPT), 15_900_000)
    assert [s.label for s in f.scores] == ["quantized_ttt_phased"]  # diagnostics are not candidates
    assert f.total_eval_ms == 400_000.0 and f.steps == 4900


def test_key_value_dump_dialect(tmp_path):
    (tmp_path / "ternary_log_7.txt").write_text(kv_log(7, 1.1578))
    f = parse_log(tmp_path / "ternary_log_7.txt")
    assert f.seeds == (7,) and f.name_seed == 7 and f.world_sizes == (GPUS,)
    assert f.bytes_total == 15_990_000 and f.bytes_code == len(SCRIPT)
    assert f.bytes_model == 15_990_000 - len(SCRIPT)  # total − code when no model line
    assert f.scores[-1].family == "final_sliding"
    assert f.scores[-1].eval_ms == 428712.0 and f.step_avg_ms == 91.5


def test_other_size_lines(tmp_path):
    (tmp_path / "a.log").write_text("seed:1\nINT7+zlib model: 15123456 bytes\nCode size: 100 bytes\n"
                                    "final_x val_loss:2.0 val_bpb:1.2\n")
    (tmp_path / "b.log").write_text("seed:1\nartifact:15.92MB\nfinal_x val_loss:2.0 val_bpb:1.2\n")
    assert parse_log(tmp_path / "a.log").bytes_model == 15_123_456
    b = parse_log(tmp_path / "b.log")
    assert b.bytes_model is None and b.bytes_model_approx == 15_920_000


def test_a_summary_log_names_no_seed(tmp_path):
    (tmp_path / "summary.log").write_text("[19:23:20] RUN seed=42\n[19:35:17] DONE seed=42 rc=0 dur=717s\n"
                                          '  "seed": 42,\n  "post_ttt_val_bpb": 1.064,\n')
    f = parse_log(tmp_path / "summary.log")
    assert f.seeds == () and not f.scores and not f.trained


# ---- conventions accepted -----------------------------------------------------------------------

@pytest.mark.parametrize("maker", [baseline_log, dump_log, kv_log], ids=["baseline", "dump", "key_value"])
def test_a_three_seed_record_in_each_dialect_passes(tmp_path, maker):
    logs = three_seeds(maker)
    precision = 4 if maker is kv_log else 8
    mean = sum(round(b, precision) for b in BPBS.values()) / 3
    folder = make_folder(tmp_path, logs, sub(val_bpb=round(mean, precision), seeds=list(BPBS)),
                         readme=f"val_bpb {mean:.4f}\n")
    report = check_record(folder)
    assert report["ok"], report["problems"]
    assert all(log["backs_claim"] for log in report["logs"]) and not report["warnings"], report["warnings"]


def test_a_stated_primary_seed_is_a_note_an_unstated_one_a_warning(tmp_path):
    logs = three_seeds()
    readme = f"{BPBS[7]:.4f}. Submitted: seed 7 (best)\n"
    stated = make_folder(tmp_path / "a", logs, sub(val_bpb=BPBS[7]), readme=readme)
    report = check_record(stated)
    assert report["ok"] and has(report["notes"], "states that seed as its primary one")
    assert not has(report["warnings"], "single seed")
    unstated = make_folder(tmp_path / "b", logs, sub(val_bpb=BPBS[7]), readme=f"{BPBS[7]:.4f}\n")
    report = check_record(unstated)
    assert report["ok"] and has(report["warnings"], "the headline is a single seed (the best)")
    assert has(report["warnings"], f"whose mean is {MEAN:.8f}")


def test_an_extra_evaluation_after_the_final_backs_the_claim(tmp_path):
    logs = {f"train_seed{s}.log": baseline_log(s, 1.2, extra=(f"final_ttt val_loss:2.0 val_bpb:{b:.8f} "
                                                              "eval_time:90000ms",)) for s, b in BPBS.items()}
    report = check_record(make_folder(tmp_path, logs, sub(val_bpb=MEAN)))
    assert report["ok"], report["problems"]
    assert {log["label"] for log in report["logs"]} == {"final_ttt"}


def test_eval_only_logs_of_the_same_seeds_and_identical_copies(tmp_path):
    logs = three_seeds(dump_log)
    rescored = {s: b - 0.001 for s, b in BPBS.items()}
    for s, b in rescored.items():
        logs[f"ttt/seed_{s}.log"] = "\n".join(dump_log(s, b).splitlines()[:4] + dump_log(s, b).splitlines()[-2:])
    logs["train.log"] = logs["train_seed42.log"]
    claim = round(sum(rescored.values()) / 3, 5)
    report = check_record(make_folder(tmp_path, logs, sub(val_bpb=claim, seeds={str(s): {} for s in BPBS})))
    assert report["ok"], report["problems"]
    assert has(report["notes"], "train_seed42.log is an identical copy of train.log: counted once")
    assert sorted(log["file"] for log in report["logs"] if log["backs_claim"]) == \
        ["ttt/seed_1337.log", "ttt/seed_42.log", "ttt/seed_7.log"]
    assert not has(report["problems"], "more than once")


def test_capped_runs_may_stop_two_steps_past_the_clock(tmp_path):
    ok = {f"train_seed{s}.log": baseline_log(s, b, train_ms=CLOCK_MS + 90, step_avg=50.0) for s, b in BPBS.items()}
    report = check_record(make_folder(tmp_path / "a", ok, sub(val_bpb=MEAN)))
    assert report["ok"] and has(report["notes"], "stopped at most 2 steps past")
    late = dict(ok, **{"train_seed7.log": baseline_log(7, BPBS[7], train_ms=CLOCK_MS + 110, step_avg=50.0)})
    report = check_record(make_folder(tmp_path / "b", late, sub(val_bpb=MEAN)))
    assert not report["ok"] and has(report["problems"], "train_seed7.log: trained for")
    unstopped = dict(ok, **{"train_seed7.log": baseline_log(7, BPBS[7], train_ms=CLOCK_MS + 10, stopped=False)})
    report = check_record(make_folder(tmp_path / "c", unstopped, sub(val_bpb=MEAN)))
    assert has(report["problems"], "(and no stopping_early line)")


def test_alternate_names_numbers_as_strings_and_aliases(tmp_path):
    logs = {f"run_s{s}.txt": kv_log(s, b) for s, b in BPBS.items()}
    mean4 = sum(round(b, 4) for b in BPBS.values()) / 3
    data = {"author": "Ada", "github_id": "ada", "name": "x", "date": "2026-04-01", "mean_val_bpb": f"{mean4:.5f}",
            "code_bytes": f"{len(SCRIPT):,}", "p_value": "<0.001"}
    folder = make_folder(tmp_path, logs, data, script=("train_gpt_cuda.py", SCRIPT),
                         submission_name="submission_cuda.json", readme=f"{mean4:.4f}\n")
    report = check_record(folder)
    assert report["ok"], report["problems"]
    for phrase in ("named submission_cuda.json, not submission.json", "reading the score from 'mean_val_bpb'",
                   "is a string", "the training script is train_gpt_cuda.py", "'p_value' should be number|null"):
        assert has(report["warnings"], phrase), (phrase, report["warnings"])
    assert report["code"]["script"] == "train_gpt_cuda.py"


# ---- defects found --------------------------------------------------------------------------------

def test_a_claim_no_log_backs(tmp_path):
    logs = {"train.log": baseline_log(1337, 1.1666)}
    report = check_record(make_folder(tmp_path, logs, sub(val_bpb=1.1501, seeds=[1337, 42, 123])))
    assert not report["ok"]
    assert has(report["problems"], "val_bpb 1.1501 is not backed by the logs of seeds 1337, 42, 123")
    assert has(report["problems"], "names seed 42 but no log of seed 42")


def test_a_seed_result_from_a_log_of_another_seed(tmp_path):
    logs = {"run_a.txt": baseline_log(1342, 1.47025754), "run_s42.txt": baseline_log(42, 1.47155711),
            "run_seed1341.txt": baseline_log(1341, 1.39697242)}
    data = sub(val_bpb=1.4709, seeds=[1341, 42], seed_results={"1341": {"val_bpb": 1.4703}, "42": {"val_bpb": 1.4716}})
    report = check_record(make_folder(tmp_path, logs, data, track="non_record_16mb"))
    assert has(report["problems"], "seed_results['1341'] val_bpb 1.4703 is in no log of seed 1341; it is run_a.txt")
    assert has(report["problems"], "it is the mean of run_a.txt")


def test_a_log_named_for_another_seed(tmp_path):
    logs = dict(three_seeds())
    logs["train_seed7.log"] = baseline_log(8, BPBS[7])
    report = check_record(make_folder(tmp_path, logs, sub(val_bpb=MEAN)))
    assert has(report["problems"], "train_seed7.log is named for seed 7 but the run in it says seed 8")


def test_duplicate_seeds_fail_on_the_record_track_only(tmp_path):
    logs = {f"train_v{i}.txt": baseline_log(1337, 1.2 + i / 100) for i in range(3)}
    record = check_record(make_folder(tmp_path / "a", logs, sub(val_bpb=1.22)))
    assert has(record["problems"], "seed 1337 trained more than once (train_v0.txt, train_v1.txt, train_v2.txt)")
    study = check_record(make_folder(tmp_path / "b", logs, sub(val_bpb=1.22), track="non_record_16mb"))
    assert study["ok"] and has(study["notes"], "3 runs with seed 1337")


def test_world_size_and_clocks_on_the_record_track(tmp_path):
    logs = dict(three_seeds())
    logs["train_seed7.log"] = baseline_log(7, BPBS[7], world=2, train_ms=4 * CLOCK_MS, step_avg=169.0)
    logs["train_seed42.log"] = dump_log(42, BPBS[42], eval_s=EVAL_SECONDS + 1)
    report = check_record(make_folder(tmp_path / "a", logs, sub(val_bpb=MEAN)))
    assert has(report["problems"], f"train_seed7.log: world_size 2; the record track runs on {GPUS} GPUs")
    assert has(report["problems"], f"train_seed7.log: trained for {4 * TRAIN_SECONDS:.1f} s")
    assert has(report["problems"], f"train_seed42.log: evaluation took {EVAL_SECONDS + 1:.1f} s")
    other = check_record(make_folder(tmp_path / "b", logs, sub(val_bpb=MEAN), track="non_record_16mb"))
    assert not has(other["problems"], "world_size") and not has(other["problems"], "trained for")


def test_empty_files_and_ids(tmp_path):
    logs = three_seeds()
    folder = make_folder(tmp_path, logs, sub(val_bpb=MEAN, author="", github_id="  "), script=("train_gpt.py", ""))
    (folder / "README.md").write_text("")
    report = check_record(folder)
    for phrase in ("train_gpt.py is empty (0 bytes)", "README.md is empty (0 bytes)", "author is empty",
                   "github_id is empty"):
        assert has(report["problems"], phrase), (phrase, report["problems"])
    data = {"name": "x", "val_bpb": MEAN}
    report = check_record(make_folder(tmp_path / "b", logs, data))
    assert has(report["problems"], "no author") and has(report["problems"], "no github_id")


def test_fewer_than_three_seeds_is_a_warning(tmp_path):
    logs = {"train_seed42.log": baseline_log(42, BPBS[42])}
    report = check_record(make_folder(tmp_path, logs, sub(val_bpb=BPBS[42], seed=42), readme=f"{BPBS[42]:.4f}\n"))
    assert report["ok"] and has(report["warnings"], "training logs of 1 seed(s)")


def test_readable_code_that_fits_only_as_its_compressed_wrapper(tmp_path):
    script = "def f():\n    '''Doc.'''\n    return 1\n\n" * 3000  # compresses to almost nothing
    wrapper = codesize.wrapper_bytes(script)
    model = CAP_BYTES - len(script) // 2
    logs = {f"train_seed{s}.log": dump_log(s, b, model=model, code=wrapper, source=len(script))
            for s, b in BPBS.items()}
    report = check_record(make_folder(tmp_path, logs, sub(val_bpb=MEAN), script=("train_gpt.py", script)))
    assert report["ok"], report["problems"]
    assert report["code"]["enforced"] == "wrapper" and report["code"]["bytes_shipped"] == len(script)
    assert report["ledger"]["bytes_code"] == wrapper < 2000 and report["ledger"]["bytes_total"] == model + wrapper
    assert has(report["warnings"], "it fits only counting its code as a compressed wrapper")
    too_big = {f"train_seed{s}.log": dump_log(s, b, model=CAP_BYTES - 100, code=wrapper, source=len(script))
               for s, b in BPBS.items()}
    report = check_record(make_folder(tmp_path / "b", too_big, sub(val_bpb=MEAN), script=("train_gpt.py", script)))
    assert not report["ok"] and report["code"]["enforced"] == "shipped"
    assert has(report["problems"], "the run logged a total submission size of")


def test_the_wrapper_drops_docstrings_and_comments_and_keeps_code():
    bare = "def f(x):\n    return x + 1\n"
    documented = '"""Module doc."""\n# a comment\ndef f(x):\n    """' + "Explains f. " * 40 + '"""\n    return x + 1\n'
    assert codesize.wrapper_bytes(documented) == codesize.wrapper_bytes(bare)
    assert codesize.wrapper_bytes(bare) < codesize.wrapper_bytes(bare + "y = f(2) * 3\n")
    assert codesize.wrapper_bytes("def broken(:\n") is None


def test_compliance_statements_the_logs_refute(tmp_path):
    logs = {"train_seed42.log": baseline_log(42, BPBS[42], train_ms=CLOCK_MS + 5000)}
    data = sub(val_bpb=BPBS[42], compliance={"train_under_600s": True, "three_seeds": True, "no_slot": True})
    report = check_record(make_folder(tmp_path, logs, data))
    assert has(report["warnings"], "compliance.train_under_600s is true")
    assert has(report["warnings"], "compliance.three_seeds is true") and not has(report["warnings"], "no_slot")


def test_readme_consistency(tmp_path):
    readme = ("**val_bpb = 1.2154**\n\n```bash\nSEED=1 torchrun --standalone --nproc_per_node=8 "
              "train\\_gpt\\_sweep.py\nbash eval/eval.sh\n```\n")
    report = check_record(make_folder(tmp_path, three_seeds(), sub(val_bpb=MEAN), readme=readme))
    assert has(report["warnings"], f"README.md does not state the claimed val_bpb {MEAN:.4f}; it states 1.2154")
    assert has(report["warnings"], "README.md runs train_gpt_sweep.py, which is not in the folder")
    assert has(report["warnings"], "README.md runs eval/eval.sh")


def test_check_prints_grades(tmp_path, capsys):
    folder = make_folder(tmp_path, {"train_seed42.log": baseline_log(42, BPBS[42])}, sub(val_bpb=BPBS[42]))
    assert main(["pack", "--check", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "WARNING  the folder has training logs of 1 seed(s)" in out and "ok       no errors" in out
    assert f"code     train_gpt.py: {len(SCRIPT):,} bytes as shipped" in out and "checked on the shipped bytes" in out


def test_a_helper_module_is_parsed_in_process_only_after_it_compiled_in_the_child(tmp_path, monkeypatch):
    logs = {f"train_seed{s}.log": baseline_log(s, b) for s, b in BPBS.items()}
    folder = make_folder(tmp_path, logs, sub(val_bpb=MEAN), script=("train_gpt.py", "import helper\n" + SCRIPT))
    good = "def f():\n    '''Doc.'''\n    return 1\n"
    (folder / "helper.py").write_text(good)
    parsed: list[str] = []
    real_parse = codesize.ast.parse
    monkeypatch.setattr(codesize.ast, "parse", lambda source, *a, **k: parsed.append(source) or real_parse(source, *a, **k))
    report = check_record(folder)
    assert good in parsed and report["code"]["files"]["helper.py"]["shipped"] == len(good)
    # A helper the child cannot compile (here nesting past the parser's limit; a bomb that exhausts
    # the child's memory fails there the same way) counts as the bytes it ships, never parsed here.
    bomb = "x = " + "(" * 5000 + ")" * 5000 + "\n"
    (folder / "helper.py").write_text(bomb)
    parsed.clear()
    report = check_record(folder)
    assert bomb not in parsed and report["code"]["files"]["helper.py"] == {"shipped": len(bomb), "wrapper": len(bomb)}
    assert has(report["notes"], "helper.py does not compile")


def test_a_readme_that_gives_one_size_two_ways_that_disagree_is_warned(tmp_path):
    logs = {f"train_seed{s}.log": baseline_log(s, b) for s, b in BPBS.items()}
    readme = f"# A record\n{MEAN:.4f} bpb. Artifact: 15,878,809 bytes (15.1 MB); code 47,686 bytes (0.05 MB).\n"
    report = check_record(make_folder(tmp_path, logs, sub(val_bpb=MEAN), readme=readme))
    assert report["ok"] and has(report["warnings"], "'15,878,809 bytes (15.1 MB)': 15,878,809 bytes is 15.88 MB")
    assert not has(report["warnings"], "47,686")  # 0.047686 MB rounds to 0.05: one size
    agreeing = readme.replace("15.1 MB", "15.88 MB").replace("15,878,809 bytes (", "15.14 MiB (15,878,809 bytes) or (")
    report = check_record(make_folder(tmp_path / "b", logs, sub(val_bpb=MEAN), readme=agreeing))
    assert not has(report["warnings"], "gives one size")


def test_a_score_logged_with_eval_time_zero_is_warned_as_untimed(tmp_path):
    logs = {f"train_seed{s}.log": baseline_log(s, b) for s, b in BPBS.items()}
    logs["train_seed7.log"] = logs["train_seed7.log"].replace("eval_time:1400ms", "eval_time:0ms")
    report = check_record(make_folder(tmp_path, logs, sub(val_bpb=MEAN), readme=f"{MEAN:.4f}\n"))
    assert has(report["warnings"], "train_seed7.log: final_int8_zlib_roundtrip logs eval_time:0ms: its evaluation was not timed")
    assert sum("eval_time:0ms" in w for w in report["warnings"]) == 1


def test_readme_figures_of_runs_are_held_to_the_logs_at_their_own_precision(tmp_path):
    logs = {f"train_seed{s}.log": baseline_log(s, b) for s, b in BPBS.items()}  # 12,000 steps, 15,000,000-byte model
    seeds = sorted(BPBS)
    rows = [f"| {seeds[0]} | 12,000 | 15.00 MB |", f"| {seeds[1]} | ~12,000 | 14.31 MiB |",
            f"| **{seeds[2]}** | 12,005 | ~15,100,000 |"]
    readme = "\n".join([f"# A record\n{MEAN:.4f} bpb. Artifact: ~14.3 MB (the model).\n",
                        "| Seed | Steps | Artifact size |", "|---|---|---|", *rows, "| Mean | 12,002 | |", "",
                        f"All runs on 8xH100; `train_seed{seeds[0]}.log` is on 2xH100.\n"])
    report = check_record(make_folder(tmp_path, logs, sub(val_bpb=MEAN), readme=readme))
    readme_warnings = [w for w in report["warnings"] if w.startswith("README.md")]
    assert report["ok"] and len(readme_warnings) == 3, readme_warnings
    assert has(readme_warnings, f"seed {seeds[2]}'s steps as '12,005'; the logs show train_seed{seeds[2]}.log 12,000")
    assert has(readme_warnings, f"seed {seeds[2]}'s artifact size as '~15,100,000'")  # ±50,000 misses 15,000,000
    assert has(readme_warnings, f"train_seed{seeds[0]}.log ran on 2×H100; it logs world_size 8")
    wrong = readme.replace("~14.3 MB", "15.2 MB")  # neither 15.0 MB nor 14.3 MiB
    report = check_record(make_folder(tmp_path / "b", logs, sub(val_bpb=MEAN), readme=wrong))
    assert has(report["warnings"], "README.md says 'Artifact: 15.2 MB'; no log's artifact is that size")


def test_a_largest_size_or_a_submitted_score_the_logs_do_not_back_is_warned(tmp_path):
    logs = {f"train_seed{s}.log": baseline_log(s, b, model=15_000_000 + s) for s, b in BPBS.items()}
    largest = 15_000_000 + max(BPBS) + len(SCRIPT)  # seed 1337's total
    readme = f"# A record\n{MEAN:.4f} bpb. Submitting at `bpb={MEAN:.3f}`. All under the cap (max: {largest:,} bytes).\n"
    report = check_record(make_folder(tmp_path, logs, sub(val_bpb=MEAN), readme=readme))
    assert report["ok"] and not [w for w in report["warnings"] if "largest" in w or "Submitting" in w]
    slipped = readme.replace(f"{largest:,}", f"{largest - 1295:,}").replace(f"bpb={MEAN:.3f}", "bpb=1.195")
    report = check_record(make_folder(tmp_path / "b", logs, sub(val_bpb=MEAN), readme=slipped))
    assert has(report["warnings"], f"README.md gives the largest artifact as {largest - 1295:,} bytes")
    assert has(report["warnings"], "README.md says 'Submitting at `bpb=1.195', but submission.json claims")
