"""`golf budget`: param counts, byte estimates, fit and exit codes, the largest-model search, FLOPs."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import REPO, run_cli
from torch import nn

import quant
from golf import budget, models, selfcontained
from golf.cli import build_parser, main
from golf.commands.budget import ENV_FLAGS, EPILOG

RATIOS = {"int8": 1.0, "fp16": 2.0, "fp32": 4.0, "int6": 0.75, "int4g32": 0.625}
TINY = {"vocab_size": 1024, "num_layers": 2, "model_dim": 64, "num_heads": 4, "num_kv_heads": 2}
TINY_FLAGS = ["--num-layers", "2", "--model-dim", "64", "--num-heads", "4", "--num-kv-heads", "2",
              "--seq-len", "64", "--batch-tokens", "2048"]
LIMIT = 16_000_000


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """The trainer's variables in the caller's shell must not leak into these tests."""
    for name in [*ENV_FLAGS.values(), "COMPRESSOR"]:
        monkeypatch.delenv(name, raising=False)


def write_ratios(path, table=None):
    path.write_text(json.dumps({"provenance": {"command": "test", "date": "today", "machine": "none", "model": "none"},
                                "compressor": "zstd-22", "bytes_per_param": table or RATIOS}))
    return path


@pytest.fixture
def ratios(tmp_path):
    return write_ratios(tmp_path / "ratios.json")


def budget_json(capsys, *argv: str) -> tuple[int, dict]:
    code = run_cli(["budget", *argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


def real_model_bytes(config: dict, rule: str) -> int:
    """Independent of the planner's closed-form shapes: a real CPU model, quant.plan, the table."""
    model = models.build("ar", config)
    sd = model.state_dict()
    raw = sum(t.numel() * RATIOS[s] for name, s in quant.plan(sd, rule, roles=model.checked_roles()).items()
              for t in [sd[name]])
    return math.ceil(raw) + budget.OVERHEAD_FIXED_BYTES + budget.OVERHEAD_PER_TENSOR_BYTES * len(sd)


@pytest.mark.parametrize("config", [TINY, {**TINY, "num_layers": 3, "model_dim": 96, "num_heads": 6,
                                           "num_kv_heads": 3, "mlp_mult": 3, "tie_embeddings": False}])
def test_components_add_up_to_the_real_model(config, ratios, capsys):
    model = models.build("ar", config)
    real = {k: tuple(t.shape) for k, t in model.state_dict().items()}
    cfg = models.make_config("ar", config)
    assert budget.ar_shapes(cfg) == real  # the closed form the search uses is the model's shapes

    parts = budget.params_by_component(budget.meta_shapes("ar", cfg))
    assert sum(parts.values()) == sum(p.numel() for p in model.parameters())
    v, d = cfg.vocab_size, cfg.model_dim
    assert parts["embedding"] == v * d
    assert parts["lm_head"] == (0 if cfg.tie_embeddings else v * d)
    linear = {n: m.weight.numel() for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    assert parts["attention"] == sum(n for k, n in linear.items() if ".attn." in k)
    assert parts["mlp"] == sum(n for k, n in linear.items() if ".mlp." in k)

    flags = ["--num-layers", str(cfg.num_layers), "--model-dim", str(d), "--num-heads", str(cfg.num_heads),
             "--num-kv-heads", str(cfg.num_kv_heads), "--mlp-mult", str(cfg.mlp_mult),
             "--tie-embeddings", str(int(cfg.tie_embeddings))]
    _, r = budget_json(capsys, *flags, "--ratios", str(ratios), "--code-bytes", "0", "--no-search")
    assert r["params"]["total"] == sum(p.numel() for p in model.parameters())
    assert r["vocab"]["params"] == v * d * (1 if cfg.tie_embeddings else 2) and r["closed_form_shapes"]


def test_bytes_estimate_is_the_hand_computed_sum(ratios, capsys):
    code, r = budget_json(capsys, *TINY_FLAGS, "--ratios", str(ratios), "--code-bytes", "1000",
                          "--rule", "int6", "--rule", "int8", "--no-search")
    assert code == 0
    int6, int8 = r["rules"]
    # 22 tensors: tok_emb, skip_weights, 10 per block. Matrices: tok_emb 1024*64 = 65536, per block
    # c_q 64*64 + c_k 32*64 + c_v 32*64 + proj 64*64 + fc 128*64 + proj 64*128 = 28672. Control (fp32
    # under both rules): per block q_gain 4 + attn_scale 64 + mlp_scale 64 + resid_mix 128, skips 64.
    overhead = budget.OVERHEAD_FIXED_BYTES + 22 * budget.OVERHEAD_PER_TENSOR_BYTES
    matrices, control = 65536 + 2 * 28672, 2 * (4 + 64 + 64 + 128) + 64
    assert int6["model_bytes"] == matrices * 0.75 + control * 4 + overhead
    # The official int8 preset keeps tensors of <= 65,536 elements as fp16: here, every matrix.
    assert int8["model_bytes"] == matrices * 2 + control * 4 + overhead
    assert int6["total_bytes"] == int6["model_bytes"] + 1000 and int6["headroom"] == LIMIT - int6["total_bytes"]
    assert int6["bytes_by_component"]["embedding"] == 65536 * 0.75
    assert int6["bytes_by_scheme"] == {"int6": matrices * 0.75, "fp32": control * 4}


def test_exit_codes_fit_and_over(ratios, capsys):
    assert run_cli(["budget", *TINY_FLAGS, "--ratios", str(ratios), "--code-bytes", "0", "--no-search"]) == 0
    assert "fits" in capsys.readouterr().out
    over = ["budget", *TINY_FLAGS, "--ratios", str(ratios), "--code-bytes", "15990000", "--no-search"]
    assert run_cli(over) == 1
    out = capsys.readouterr().out
    assert "does NOT fit" in out and "headroom -" in out
    # Only the chosen (first) rule decides: fp32 is over, int6 alone would fit.
    code, r = budget_json(capsys, *TINY_FLAGS, "--ratios", str(ratios), "--code-bytes", "15600000",
                          "--quant", "fp32", "--rule", "int6", "--no-search")
    assert code == 1 and [row["fits"] for row in r["rules"]] == [False, True]


def test_env_is_read_and_flags_override_it(ratios, capsys, monkeypatch):
    monkeypatch.setenv("NUM_LAYERS", "3")
    monkeypatch.setenv("QUANT", "int6")
    monkeypatch.setenv("TRAIN_SEQ_LEN", "128")
    _, r = budget_json(capsys, "--model-dim", "64", "--num-heads", "4", "--ratios", str(ratios),
                       "--code-bytes", "0", "--rule", "fp16", "--no-search")
    assert r["config"]["num_layers"] == 3 and r["compute"]["seq_len"] == 128
    assert [row["rule"] for row in r["rules"]] == ["int6", "fp16"] and r["rules"][0]["chosen"]
    _, r = budget_json(capsys, "--num-layers", "2", "--quant", "int8", "--model-dim", "64", "--num-heads", "4",
                       "--ratios", str(ratios), "--code-bytes", "0", "--no-search")
    assert r["config"]["num_layers"] == 2 and r["rules"][0]["rule"] == "int8"


def test_largest_model_fits_and_one_step_larger_does_not(ratios, capsys):
    code_bytes = 15_600_000  # leaves 400 kB for the model: a search over a few dozen layers
    _, r = budget_json(capsys, *TINY_FLAGS, "--ratios", str(ratios), "--code-bytes", str(code_bytes),
                       "--quant", "emb=int4g32,attn=int6,mlp=int6")
    rule = r["rules"][0]["rule"]
    depth, width = r["rules"][0]["largest"]["num_layers"], r["rules"][0]["largest"]["model_dim"]
    fit = code_bytes + real_model_bytes({**TINY, "num_layers": depth["value"]}, rule)
    over = code_bytes + real_model_bytes({**TINY, "num_layers": depth["value"] + 1}, rule)
    assert fit == depth["total_bytes"] <= LIMIT < over == depth["next"]["total_bytes"]
    assert depth["value"] > 2 and not depth["at_cap"]

    # Width: head dim 16 and 2 query heads per KV head kept, so MODEL_DIM steps by lcm(64, 32) = 64.
    assert width["step"] == 64 and width["value"] % 64 == 0
    dim = width["value"]
    assert (width["num_heads"], width["num_kv_heads"]) == (dim // 16, dim // 32)
    fit = code_bytes + real_model_bytes({**TINY, "model_dim": dim, "num_heads": dim // 16,
                                         "num_kv_heads": dim // 32}, rule)
    over = code_bytes + real_model_bytes({**TINY, "model_dim": dim + 64, "num_heads": (dim + 64) // 16,
                                          "num_kv_heads": (dim + 64) // 32}, rule)
    assert fit == width["total_bytes"] <= LIMIT < over == width["next"]["total_bytes"]


def test_nothing_fits_is_reported_not_crashed(ratios, capsys):
    code, r = budget_json(capsys, *TINY_FLAGS, "--ratios", str(ratios), "--code-bytes", str(LIMIT))
    assert code == 1 and r["rules"][0]["largest"] == {"num_layers": None, "model_dim": None}


@pytest.mark.parametrize("tied", [True, False])
def test_flops_per_token_and_step_time(tied, ratios, capsys):
    _, r = budget_json(capsys, *TINY_FLAGS, "--tie-embeddings", str(int(tied)), "--ratios", str(ratios),
                       "--code-bytes", "0", "--mfu", "0.5", "--no-search")
    f = r["compute"]
    n_matmul = 2 * 28672 + 1024 * 64  # blocks' Linear weights + the head's V*D (tied or not, counted once)
    assert f["matmul_params"] == n_matmul
    assert f["flops_per_token"] == 6 * n_matmul + 6 * 2 * 64 * 64  # 6*N + 6*L*T*D
    step = f["flops_per_token"] * 2048 / (8 * 989e12 * 0.5)
    assert f["step_seconds"] == pytest.approx(step)
    assert f["steps"] == int(600 // step) and f["tokens"] == f["steps"] * 2048


def test_text_report_states_formula_and_estimates(ratios, capsys):
    assert run_cli(["budget", *TINY_FLAGS, "--ratios", str(ratios), "--rule", "int6"]) == 0
    out = capsys.readouterr().out
    assert "6*N_matmul + 6*L*T*D" in out and "estimate" in out and "largest that fits" in out


def test_default_code_bytes_is_the_packed_trainer(ratios, capsys):
    files = selfcontained.code_files(budget.default_script())
    assert {"train_gpt.py", "golf/__init__.py", "golf/models/ar.py", "quant/rules.py", "quant/intn.py"} <= \
        {p.relative_to(REPO).as_posix() for p in files}
    _, r = budget_json(capsys, *TINY_FLAGS, "--ratios", str(ratios), "--no-search")
    assert r["code_source"].startswith("exact")
    assert r["code_bytes"] == len(selfcontained.pack(selfcontained.read_sources(budget.default_script())))
    assert r["code_bytes"] < sum(p.stat().st_size for p in files)


def one_line_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("golf: error: ") and "\n" not in err
    return err


def test_bad_input_is_one_line_and_exit_2(tmp_path, ratios, capsys, monkeypatch):
    partial = write_ratios(tmp_path / "partial.json", {"fp32": 4.0, "fp16": 2.0, "int8": 1.0})
    err = one_line_error(capsys, ["budget", *TINY_FLAGS, "--ratios", str(partial), "--quant", "int6"])
    assert "'int6'" in err and str(partial) in err
    err = one_line_error(capsys, ["budget", *TINY_FLAGS, "--ratios", str(tmp_path / "nope.json")])
    assert "nope.json" in err
    one_line_error(capsys, ["budget", *TINY_FLAGS, "--ratios", str(ratios), "--quant", "int99"])
    one_line_error(capsys, ["budget", "--model-dim", "100", "--num-heads", "8", "--ratios", str(ratios)])
    monkeypatch.setenv("NUM_LAYERS", "many")
    assert "NUM_LAYERS" in one_line_error(capsys, ["budget", "--ratios", str(ratios)])


def test_help_has_an_epilog_that_matches_the_constants():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert sub.choices["budget"].epilog == EPILOG
    assert f"{budget.OVERHEAD_FIXED_BYTES} B + {budget.OVERHEAD_PER_TENSOR_BYTES} B per tensor" in EPILOG
    assert f"{budget.DEFAULT_MFU:.2f}" in EPILOG and "6*N_matmul + 6*L*T*D" in EPILOG


def test_meta_build_handles_a_config_too_big_for_memory():
    cfg = models.make_config("ar", {"num_layers": 64, "model_dim": 8192, "num_heads": 64, "num_kv_heads": 8})
    shapes = budget.meta_shapes("ar", cfg)
    assert all(t.device == torch.device("meta") for t in shapes.state_dict.values())
    assert sum(budget.params_by_component(shapes).values()) > 2.5e10  # ~100 GB in fp32
