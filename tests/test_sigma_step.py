"""intN with a step of K row RMS (`int6s12`): the step is K·σ/qmax per row (σ about zero), rules
spell it per group and route it to encoding, GPTQ and QAT, a wider step costs fewer compressed
bytes by about the entropy's log2, and `golf budget` estimates a K it lacks from the nearest one."""

from __future__ import annotations

import json
import math

import pytest
import torch

import quant
from conftest import read_result, run_cli, run_trainer
from golf.budget import Ratios
from golf.errors import GolfError
from golf.models import build
from quant import QuantError, get_scheme
from quant.intn import as_rows, fp16_scale
from quant.schemes import EncodeOptions
from test_schemes import trained_like


def sigma_step(w: torch.Tensor, k: float, qmax: int) -> torch.Tensor:
    """The step the scheme promises, computed here from its definition."""
    rows = as_rows(w)
    return fp16_scale(k * rows.square().mean(dim=1).sqrt() / qmax)


def test_the_step_is_k_row_standard_deviations_over_qmax():
    w = trained_like(48, 256)
    int6, opts = get_scheme("int6"), EncodeOptions(clip_sigmas=12.0)
    enc = int6.encode(w, opts)
    assert torch.equal(enc.parts["scale"].float(), sigma_step(w, 12.0, 31))
    out = int6.decode(enc, tuple(w.shape), torch.float32)
    assert float((out - w).abs().max()) <= int6.error_bound(w, opts)
    # Most of the range is left unused: ~3σ of a row is ~8 of the 31 codes.
    codes = torch.round(out / enc.parts["scale"].float()[:, None])
    assert float(codes.abs().quantile(0.99)) <= 10 < 31
    plain = int6.encode(w)
    assert not torch.equal(plain.parts["scale"], enc.parts["scale"])  # the clip search chose other steps


def test_a_constant_or_offset_row_keeps_its_values():
    # σ is taken about zero (the grid's centre): a row's own standard deviation would give a constant
    # row a zero step and decode it as nearly nothing.
    w = trained_like(4, 64)
    w[1], w[2] = 0.05, w[2] + 0.1
    int6, opts = get_scheme("int6"), EncodeOptions(clip_sigmas=12.0)
    out = int6.decode(int6.encode(w, opts), tuple(w.shape), torch.float32)
    step = sigma_step(w, 12.0, 31)
    assert bool(((out - w).abs().amax(dim=1) <= step * 0.5 + 1e-7).all())  # no row clipped: half a step at most


def test_gptq_keeps_the_sigma_step():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1024, 64, generator=g) @ (torch.eye(64) + 0.5 * torch.randn(64, 64, generator=g))
    w = trained_like(32, 64, seed=2)
    opts = EncodeOptions(clip_sigmas=13.0, hessian=x.T @ x / x.shape[0])
    enc = get_scheme("int6").encode(w, opts)
    assert enc.meta["gptq"] is True and torch.equal(enc.parts["scale"].float(), sigma_step(w, 13.0, 31))
    out = get_scheme("int6").decode(enc, tuple(w.shape), torch.float32)
    assert float((out - w).abs().max()) <= get_scheme("int6").error_bound(w, opts)


def test_a_wider_step_costs_fewer_bytes_by_about_the_entropys_log2():
    w = torch.randn(256, 512, generator=torch.Generator().manual_seed(3)) * 0.02

    def compressed(k: float | None) -> int:
        enc = get_scheme("int6").encode(w, EncodeOptions(clip_sigmas=k))
        return len(quant.compress("brotli-11", enc.parts["codes"].numpy().tobytes()))

    searched, at12, at16 = compressed(None), compressed(12.0), compressed(16.0)
    assert at16 < at12 < searched
    predicted = math.log2(16 / 12) / 8 * w.numel()  # bytes saved by a step 16/12 as wide
    assert at12 - at16 == pytest.approx(predicted, rel=0.25)


def test_rules_spell_the_step_per_group_and_route_it():
    rule = quant.parse_rule("emb=int7s15,attn=int6s13,mlp=int6s12.5,gptq=1")
    assert rule.spec == ("emb=int7s15,head=int8,attn=int6s13,mlp=int6s12.5,other=int8,small=fp16,control=fp32,"
                         "layout=planes,gptq=1")
    assert quant.parse_rule(rule.spec).spec == rule.spec
    assert quant.parse_rule("int6s12").spec == quant.parse_rule("other=int6s12").spec  # a bare scheme: every matrix
    assert quant.parse_rule("int6s12,gptq=1").gptq
    model = build("ar", {"vocab_size": 512, "num_layers": 1, "model_dim": 64, "num_heads": 4, "num_kv_heads": 2})
    sd, roles = model.state_dict(), model.checked_roles()
    schemes = quant.plan(sd, "emb=int7s15,attn=int6s13,mlp=int6s12.5", roles=roles)
    spelled = quant.plan(sd, "emb=int7s15,attn=int6s13,mlp=int6s12.5", roles=roles, spelled=True)
    assert schemes["tok_emb.weight"] == "int7" and spelled["tok_emb.weight"] == "int7s15"
    assert {spelled[n] for n, r in roles.items() if r == "mlp"} == {"int6s12.5"}
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02)
    sd = model.state_dict()
    q = quant.quantize(sd, "emb=int7s15,attn=int6s13,mlp=int6s12.5", roles=roles)
    for name, k, qmax in (("tok_emb.weight", 15.0, 63), ("blocks.0.attn.c_q.weight", 13.0, 31),
                          ("blocks.0.mlp.fc.weight", 12.5, 31)):
        assert q[name].scheme == ("int7" if qmax == 63 else "int6")  # decoders need nothing new
        assert torch.equal(q[name].enc.parts["scale"].float(), sigma_step(sd[name], k, qmax))
    assert quant.parse_rule("attn=int6s12.3456789").spec.startswith("emb=int8,head=int8,attn=int6s12.3456789,")
    for bad, message in (("attn=int6s0.5", r"outside \[1, 64\]"), ("attn=int6s65", r"outside \[1, 64\]"),
                         ("attn=int8s3", "unknown quantization scheme 'int8s3'"),
                         ("attn=int6s" + "9" * 10_000, r"step of 9{20} row RMS is outside")):
        with pytest.raises(QuantError, match=message):
            quant.parse_rule(bad)


def test_qat_rounds_to_the_sigma_grid():
    w = trained_like(16, 128, seed=4)
    fake = get_scheme("int6").fake_quantizer(EncodeOptions(clip_sigmas=12.0))(w)
    step = 12.0 * w.square().mean(dim=1, keepdim=True).sqrt() / 31
    assert torch.allclose(fake / step, torch.round(fake / step), atol=1e-4)
    assert not torch.allclose(fake, get_scheme("int6").fake_quantizer()(w))


def test_budget_shifts_a_missing_step_from_the_nearest_measured_one():
    ratios = Ratios(path="table", compressor="brotli-11", provenance={},
                    bytes_per_param={"int6": 0.66, "int6s12": 0.44, "int6s16": 0.39})
    w = torch.empty(4, 4)
    assert ratios.of("int6s12", w) == 0.44
    assert ratios.of("int6s14", w) == pytest.approx(0.39 + math.log2(16 / 14) / 8)  # 16 is nearer 14 in log
    assert ratios.of("int6s10", w) == pytest.approx(0.44 + math.log2(12 / 10) / 8)
    with pytest.raises(GolfError, match="'int5s8' has no measured bytes/param"):
        ratios.of("int5s8", w)


def test_the_trainer_quantizes_with_sigma_steps_and_the_artifact_scores(tmp_path, capsys):
    run_dir = tmp_path / "sigma"
    rule = "emb=int7s15,attn=int6s13,mlp=int6s12.85,gptq=1"
    proc = run_trainer(run_dir, {"ITERATIONS": "2", "MAX_WALLCLOCK_SECONDS": "0", "QUANT": rule,
                                 "GPTQ_CALIB_TOKENS": "4096", "VAL_MAX_TOKENS": "4096"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = read_result(run_dir)
    assert result["quant"] == quant.parse_rule(rule).spec
    stored = quant.read_quantized(run_dir / "model.golf")
    raw = quant.read_artifact(run_dir / "model_raw.golf").state_dict
    name = "blocks.0.mlp.fc.weight"
    assert stored.tensors[name].scheme == "int6" and stored.tensors[name].enc.meta["gptq"] is True
    assert torch.equal(stored.tensors[name].enc.parts["scale"].float(), sigma_step(raw[name], 12.85, 31))
    assert run_cli(["score", str(run_dir), "--max-tokens", "4096", "--json", "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["val_bpb"] == pytest.approx(result["val_bpb"], abs=1e-6)
