"""Schemes, rules and compressors of the standalone `quant` package."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import quant
from quant import int8 as int8_module
from quant.compress import compress, compressor_names, decompress
from quant.errors import QuantError
from quant.rules import dequantize, plan, quantize
from quant.schemes import Encoded, get_scheme, register_scheme
from conftest import named_roles

REPO = Path(__file__).resolve().parents[1]
CLIP_Q = 99.99984 / 100.0


def weights_with_outliers(rows: int, cols: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=g) * 0.05
    # A few large entries per tensor, so the 99.99984th percentile actually clips something.
    idx = torch.randint(0, rows * cols, (rows // 4 + 1,), generator=g)
    w.view(-1)[idx] = torch.randn(idx.numel(), generator=g) * 3.0
    w[0] = 0.0  # an all-zero row exercises the 1/127 floor
    return w


def official_quantize_float_tensor(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The baseline train_gpt.py `quantize_float_tensor`, written out independently of quant."""
    t32 = t.float()
    if t32.ndim == 2:
        clip_abs = torch.quantile(t32.abs(), CLIP_Q, dim=1)
        clipped = torch.maximum(torch.minimum(t32, clip_abs[:, None]), -clip_abs[:, None])
        scale = (clip_abs / 127.0).clamp_min(1.0 / 127.0)
        q = torch.clamp(torch.round(clipped / scale[:, None]), -127, 127).to(torch.int8).contiguous()
        return q, scale.to(dtype=torch.float16).contiguous()
    clip_abs = float(torch.quantile(t32.abs().flatten(), CLIP_Q).item())
    scale = torch.tensor(clip_abs / 127.0 if clip_abs > 0 else 1.0, dtype=torch.float32)
    q = torch.clamp(torch.round(torch.clamp(t32, -clip_abs, clip_abs) / scale), -127, 127).to(torch.int8).contiguous()
    return q, scale


def max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max()) if a.numel() else 0.0


# ----------------------------------------------------------------------------- int8


@pytest.mark.parametrize("shape", [(256, 300), (64, 4096), (70000,), (4, 40, 500)])
def test_int8_matches_official_bitwise(shape):
    w = weights_with_outliers(shape[0], int(torch.tensor(shape[1:]).prod()) if len(shape) > 1 else 1).reshape(shape)
    enc = get_scheme("int8").encode(w)
    q_ref, s_ref = official_quantize_float_tensor(w)
    assert torch.equal(enc.parts["q"], q_ref)
    assert enc.parts["scale"].dtype == s_ref.dtype and torch.equal(enc.parts["scale"], s_ref)
    # Decoding is the official dequantization too: q · fp16 scale (per row) or q · fp32 scale.
    if w.ndim == 2:
        ref = q_ref.float() * s_ref.float().view(-1, 1)
    else:
        ref = q_ref.float() * float(s_ref.item())
    assert torch.equal(get_scheme("int8").decode(enc, tuple(w.shape), torch.float32), ref)


def test_int8_error_per_row():
    w = weights_with_outliers(128, 700, seed=3)
    enc = get_scheme("int8").encode(w)
    deq = get_scheme("int8").decode(enc, tuple(w.shape), torch.float32)
    clip = torch.quantile(w.abs(), CLIP_Q, dim=1)[:, None]
    s32 = (clip / 127).clamp_min(1 / 127)
    s16 = enc.parts["scale"].float()[:, None]
    err = (w - deq).abs()
    inside = w.abs() <= clip
    # Unclipped entries: half a step, plus what storing the step in fp16 moved the grid (≤ 127 ulps).
    limit = s32 / 2 + 127 * (s32 - s16).abs() + 1e-6 * s32
    assert bool((err <= limit)[inside].all())
    # Clipped outliers come back at the clip, give or take that same rounding, with the sign kept.
    outside = ~inside
    assert int(outside.sum()) > 0
    assert bool((deq.abs() - clip).abs().le(limit)[outside].all())
    assert bool((torch.sign(deq) == torch.sign(w))[outside].all())
    assert bool((err <= w.abs() - clip + limit)[outside].all())


def test_row_quantile_chunks_and_long_rows_match_torch(monkeypatch):
    x = weights_with_outliers(37, 1001, seed=5).abs()
    expected = torch.quantile(x, CLIP_Q, dim=1)
    monkeypatch.setattr(int8_module, "_QUANTILE_MAX_ELEMENTS", 5000)  # chunks of 4 rows
    assert torch.equal(int8_module.row_quantile(x, CLIP_Q), expected)
    monkeypatch.setattr(int8_module, "_QUANTILE_MAX_ELEMENTS", 500)  # rows longer than the limit
    assert torch.equal(int8_module.row_quantile(x, CLIP_Q), expected)
    for q in (0.5, 0.9, 0.123):
        assert torch.equal(int8_module.row_quantile(x, q), torch.quantile(x, q, dim=1))


# ----------------------------------------------------------------------------- every scheme


@pytest.mark.parametrize("scheme", ["int8", "fp32", "fp16", "bf16"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("shape", [(96, 80), (1000,), (3, 5, 7), ()])
def test_float_schemes_round_trip_within_bound(scheme, dtype, shape):
    n = torch.Size(shape).numel()
    w = weights_with_outliers(40, 300, seed=7)[1:].flatten()[:n].reshape(shape).to(dtype)  # skip the zero row
    s = get_scheme(scheme)
    enc = s.encode(w)
    out = s.decode(enc, tuple(w.shape), w.dtype)
    assert out.dtype == w.dtype and out.shape == w.shape
    assert max_err(w, out) <= s.error_bound(w)


def test_passthrough_bounds_are_tight_enough():
    w = torch.randn(1000) * 10
    assert get_scheme("fp32").error_bound(w) == 0.0
    assert get_scheme("fp16").error_bound(w) <= float(w.abs().max()) * 2**-11 + 1e-7
    assert get_scheme("bf16").error_bound(w) <= float(w.abs().max()) * 2**-8 + 1e-30
    assert get_scheme("fp16").error_bound(torch.tensor([1e6])) == float("inf")


@pytest.mark.parametrize("dtype", [torch.int8, torch.uint8, torch.int16, torch.int32, torch.int64, torch.bool])
def test_raw_is_exact(dtype):
    w = torch.randint(0, 2 if dtype == torch.bool else 100, (5, 7)).to(dtype)
    s = get_scheme("raw")
    enc = s.encode(w)
    assert enc.parts["data"].data_ptr() != w.data_ptr()  # stored parts never alias the model
    assert torch.equal(s.decode(enc, (5, 7), dtype), w)


def test_cast_schemes_refuse_integers():
    with pytest.raises(QuantError, match="use 'raw'"):
        get_scheme("int8").encode(torch.arange(10))


def test_decode_rejects_parts_that_do_not_fit():
    enc = get_scheme("int8").encode(torch.randn(4, 8))
    with pytest.raises(QuantError, match="expected int8\\[4, 9\\]"):
        get_scheme("int8").decode(enc, (4, 9), torch.float32)
    with pytest.raises(QuantError, match="missing part 'scale'"):
        get_scheme("int8").decode(Encoded({"q": enc.parts["q"]}, enc.meta), (4, 8), torch.float32)


def test_scheme_registry():
    with pytest.raises(QuantError, match=r"unknown quantization scheme 'int3' \(known: bf16, fp16, fp32, fp8e4m3, int4, "):
        get_scheme("int3")
    with pytest.raises(QuantError, match="already registered"):
        register_scheme(get_scheme("int8"))


# ----------------------------------------------------------------------------- rules


def baseline_state_dict() -> dict[str, torch.Tensor]:
    return {
        "tok_emb.weight": torch.randn(1024, 512),
        "blocks.0.attn.c_q.weight": torch.randn(512, 512),
        "blocks.0.attn.q_gain": torch.ones(8),
        "blocks.0.attn_scale": torch.ones(512),
        "blocks.0.resid_mix": torch.ones(2, 512),
        "skip_weights": torch.ones(4, 512),
        "blocks.0.small_proj.weight": torch.randn(64, 64),
        "blocks.0.mlp.fc.weight": torch.randn(1024, 512, dtype=torch.bfloat16),
        "step": torch.tensor(7),
    }


def test_official_routing():
    assert plan(baseline_state_dict(), "int8", roles=named_roles(baseline_state_dict())) == {
        "tok_emb.weight": "int8",
        "blocks.0.attn.c_q.weight": "int8",
        "blocks.0.attn.q_gain": "fp32",
        "blocks.0.attn_scale": "fp32",
        "blocks.0.resid_mix": "fp32",
        "skip_weights": "fp32",
        "blocks.0.small_proj.weight": "fp16",
        "blocks.0.mlp.fc.weight": "int8",
        "step": "raw",
    }
    # The size threshold is inclusive: 65,536 elements stay float, one more is quantized.
    assert plan({"a": torch.zeros(256, 256), "b": torch.zeros(65537)}, "int8", roles={"a": "other", "b": "other"}) == {"a": "fp16", "b": "int8"}


@pytest.mark.parametrize("rule", ["fp32", "fp16", "bf16"])
def test_uniform_float_rules(rule):
    schemes = plan(baseline_state_dict(), rule, roles=named_roles(baseline_state_dict()))
    assert schemes.pop("step") == "raw"
    assert set(schemes.values()) == {rule}


def test_unknown_rule():
    with pytest.raises(QuantError, match=r"unknown quantization rule 'int3': use a preset \(bf16, fp16, fp32, int8\)"):
        plan(baseline_state_dict(), "int3", roles=named_roles(baseline_state_dict()))


def test_quantize_dequantize_restores_dtypes_and_shapes():
    sd = baseline_state_dict()
    qd = quantize(sd, "int8", roles=named_roles(sd))
    assert {name: qt.scheme for name, qt in qd.items()} == plan(sd, "int8", roles=named_roles(sd))
    out = dequantize(qd)
    assert list(out) == list(sd)
    for name, t in sd.items():
        assert out[name].dtype == t.dtype and out[name].shape == t.shape
        assert max_err(t, out[name]) <= get_scheme(qd[name].scheme).error_bound(t)


# ----------------------------------------------------------------------------- compressors


@pytest.mark.parametrize("name", ["zstd-22", "zlib-9", "lzma", "none"])
def test_compressors_round_trip_and_bound_output(name):
    data = bytes(range(256)) * 200 + b"tail"
    packed = compress(name, data)
    assert compress(name, data) == packed  # deterministic
    assert decompress(name, packed, len(data)) == data
    with pytest.raises(QuantError, match="exceeds|declares"):
        decompress(name, packed, len(data) - 1)


@pytest.mark.parametrize("name", ["zstd-22", "zlib-9", "lzma"])
def test_compressors_reject_truncated_streams(name):
    data = torch.randn(4000).numpy().tobytes()
    packed = compress(name, data)
    with pytest.raises(QuantError):
        decompress(name, packed[: len(packed) // 2], len(data))


def test_compressor_registry():
    assert compressor_names() == ["brotli-11", "lzma", "none", "zlib-9", "zstd-22"]
    with pytest.raises(QuantError, match=r"unknown compressor 'brotli' \(known: brotli-11, lzma, none, zlib-9, zstd-22\)"):
        compress("brotli", b"x")


# ----------------------------------------------------------------------------- package hygiene


def test_quant_is_standalone_and_never_pickles():
    code = "import sys, quant; sys.exit(any(m == 'golf' or m.startswith('golf.') for m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0
    for path in (REPO / "quant").glob("*.py"):
        text = path.read_text()
        for banned in ("import pickle", "torch.save(", "torch.load("):
            assert banned not in text, f"{path.name} mentions {banned}"
    assert set(quant.__all__) <= set(dir(quant))
