"""The interfaces a new model family plugs into, exercised by a family that exists only here.

`tests/plugins/toybits.py` is bidirectional, reserves a mask id past the tokenizer, owns a [16, d]
matrix of its own role `bits`, and scores with a Monte Carlo bound. It must train under a real
torchrun, be written, read back and scored by `golf score` without any change to golf.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import quant
from conftest import REPO, read_result, run_cli, run_trainer
from golf import embedded, models
from golf.bpb import build_byte_table, load_tokenizer
from golf.data import load_val_tokens, write_shard
from golf.errors import GolfError
from golf.score import check_vocab

PLUGINS = REPO / "tests" / "plugins"


@pytest.fixture(scope="module", autouse=True)
def toy_family():
    """Register the toy family in this process, as GOLF_MODEL_PLUGINS does in the subprocesses."""
    sys.path.insert(0, str(PLUGINS))
    old = os.environ.get(models.PLUGINS_ENV)
    os.environ[models.PLUGINS_ENV] = "toybits"
    models.variant_names()
    yield
    sys.path.remove(str(PLUGINS))
    if old is None:
        del os.environ[models.PLUGINS_ENV]
    else:
        os.environ[models.PLUGINS_ENV] = old


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("toy") / "run"
    env = {"MODEL": "toybits", "MODEL_DIM": "32", "ITERATIONS": "4", "MAX_WALLCLOCK_SECONDS": "0",
           "VAL_LOSS_EVERY": "2", "EVAL_SAMPLES": "2", "QUANT": "bits=int6,attn=int5",
           models.PLUGINS_ENV: "toybits", "PYTHONPATH": os.pathsep.join([str(PLUGINS), str(REPO)])}
    proc = run_trainer(run_dir, env, nproc=2)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return run_dir


def test_toy_family_trains_under_torchrun_with_a_bound_and_its_roles(toy_run):
    result = read_result(toy_run)
    assert result["model"] == "toybits" and result["label"] == "bound" and result["world_size"] == 2
    assert result["val_bpb_stderr"] > 0 and result["samples"] == 2 and result["seed"] == 1337
    stored = quant.read_quantized(toy_run / "model.golf")
    # The `bits` matrix gets the scheme its role names in the rule; the rest follow theirs.
    schemes = {name: t.scheme for name, t in stored.tensors.items()}
    assert schemes == {"bits": "int6", "mix.weight": "int5", "tok_emb.weight": "int8", "gain": "fp32"}
    bits = stored.tensors["bits"]
    assert bits.shape == (16, 32) and bits.enc.meta["bits"] == 6 and bits.enc.parts["codes"].dtype == torch.uint8
    assert set(bits.enc.parts) == {"codes", "scale"}  # as stored: nothing dequantized


def test_golf_score_reproduces_a_monte_carlo_bound_from_its_seed(toy_run, capsys):
    def score(seed: int) -> dict:
        assert run_cli(["score", str(toy_run), "--max-tokens", "8192", "--seed", str(seed), "--samples", "3",
                        "--json", "--no-progress"]) == 0
        return json.loads(capsys.readouterr().out)

    first, again, other = score(7), score(7), score(8)
    assert first["label"] == "bound" and first["seed"] == 7 and first["samples"] == 3
    assert first["val_bpb"] == again["val_bpb"] and first["val_bpb_stderr"] == again["val_bpb_stderr"]
    assert other["val_bpb"] != first["val_bpb"] and first["val_bpb_stderr"] > 0
    assert other["bytes"] == first["bytes"] and other["tokens"] == first["tokens"]


def test_the_trainer_score_is_reproduced_by_golf_score_with_the_recorded_seed(toy_run, capsys):
    result = read_result(toy_run)
    assert run_cli(["score", str(toy_run), "--max-tokens", str(result["tokens"] + 1), "--json", "--no-progress"]) == 0
    report = json.loads(capsys.readouterr().out)
    # Seed, samples and batch read from the artifact: the same draws on one process as on 2 ranks.
    assert report["seed"] == result["seed"] and report["samples"] == result["samples"]
    assert report["bytes"] == result["bytes"] and report["tokens"] == result["tokens"]
    assert report["val_bpb"] == pytest.approx(result["val_bpb"], rel=1e-12)
    assert report["val_bpb_stderr"] == pytest.approx(result["val_bpb_stderr"], rel=1e-9)


def test_metrics_jsonl_has_every_logged_step_and_validation(toy_run):
    rows = [json.loads(line) for line in (toy_run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["kind"] == "train"]
    val = [r for r in rows if r["kind"] == "val"]
    final = [r for r in rows if r["kind"] == "final"]
    assert [r["step"] for r in train] == [1, 2, 3, 4] and [r["step"] for r in val] == [0, 2, 4]
    assert all(r["lr_scale"] > 0 and r["tokens_seen"] == r["step"] * 2048 and r["train_time_ms"] >= 0 for r in train)
    assert all(r["label"] == "bound" and r["val_bpb_stderr"] > 0 for r in val + final)
    assert final[0]["val_bpb"] == read_result(toy_run)["val_bpb"]


def test_optimizer_groups_follow_roles():
    toy = models.build("toybits", {"vocab_size": 1024, "model_dim": 32})
    groups = {g: {id(p) for p in ps} for g, ps in toy.param_groups().items()}
    assert id(toy.bits) in groups["embed"] and id(toy.mix.weight) in groups["matrix"]
    assert id(toy.gain) in groups["scalar"] and id(toy.tok_emb.weight) in groups["embed"]


def test_the_ar_split_is_the_official_one():
    ar = models.build("ar", {})
    groups = ar.param_groups()
    assert sum(p.numel() for p in ar.parameters()) == 17_059_912
    assert [len(groups[g]) for g in ("embed", "head", "matrix", "scalar")] == [1, 0, 54, 37]
    assert all(p.ndim == 2 for p in groups["matrix"])


class Forgetful(models.LanguageModel):
    """The toy with one role entry deleted."""


def test_a_role_map_missing_a_tensor_is_refused_by_name():
    toy = models.build("toybits", {"vocab_size": 1024, "model_dim": 32})
    roles = toy.tensor_roles()
    del roles["bits"]
    toy.tensor_roles = lambda: roles  # the same model, one entry gone
    with pytest.raises(GolfError, match="no role for bits"):
        toy.param_groups()
    with pytest.raises(quant.QuantError, match="no role for tensor.s. bits"):
        quant.quantize(toy.state_dict(), "int8", roles=roles)
    toy.tensor_roles = lambda: {**roles, "bits": "bits", "ghost": "other"}
    with pytest.raises(GolfError, match="do not exist: ghost"):
        toy.checked_roles()


def test_a_rule_naming_a_group_the_model_lacks_is_refused():
    ar = models.build("ar", {"num_layers": 2, "model_dim": 64, "num_heads": 4, "num_kv_heads": 2})
    with pytest.raises(quant.QuantError, match="names group.s. atn"):
        quant.plan(ar.state_dict(), "atn=int4", roles=ar.checked_roles())


def test_reserved_ids_cost_no_bytes_and_never_come_from_data(tmp_path):
    sp = load_tokenizer(embedded.tokenizer_path())
    toy = models.build("toybits", {"vocab_size": sp.vocab_size(), "model_dim": 32})
    check_vocab(toy, sp.vocab_size())  # 1024 tokenizer ids ≤ 1025 model ids
    table = build_byte_table(sp, toy.vocab_size)
    mask = toy.mask_id
    assert table.base_bytes[mask] == 0 and table.is_boundary[mask]
    with pytest.raises(GolfError, match="1025 pieces but model 'toybits' knows only 1024"):
        check_vocab(models.build("toybits", {"vocab_size": 1023, "model_dim": 32}), 1025)
    shard = tmp_path / "fineweb_val_000000.bin"
    write_shard(shard, np.array([1, 2, mask, 3] * 40, dtype=np.uint16))
    with pytest.raises(GolfError, match=str(mask)):
        load_val_tokens([shard], 8, vocab_size=sp.vocab_size())


def test_golf_models_does_not_import_quant():
    code = ("import sys, golf.models, golf.models.ar, golf.models.base, golf.models.layers; "
            "bad = sorted(m for m in sys.modules if m == 'quant' or m.startswith('quant.')); "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, f"golf.models imports {proc.stdout.strip()}"


def test_challenge_constants_have_one_home():
    copies = []
    for path in [REPO / "train_gpt.py", *(REPO / "golf").rglob("*.py"), *(REPO / "quant").rglob("*.py")]:
        if path.name == "challenge.py":
            continue
        text = path.read_text()
        copies += [f"{path.name}: {m}" for m in re.findall(r"16_?000_?000|600_000\b|600\.0\b", text)]
    assert not copies, copies


def test_train_gpt_lists_the_ar_shape_variables_with_their_defaults():
    text = (REPO / "train_gpt.py").read_text()
    block = text.split("For MODEL=ar")[1].split("\n\n\nclass")[0].split("\n\n")[0]
    listed = dict(re.findall(r"\b([A-Z][A-Z_]+) (\S+)", block))
    fields = models.build("ar", {}).config_dict()
    assert {k.upper(): float(v) for k, v in fields.items()} == {k: float(v) for k, v in listed.items()}
