"""The quantization suite: bit packing, intN + clip search, GPTQ, fp8e4m3, tied int4, rule grammar."""

from __future__ import annotations

import hashlib

import pytest
import torch

from golf.models import build
from quant import (LAYOUTS, ArtifactError, QuantError, decode_artifact, dequantize, encode_artifact, get_scheme,
                   pack_codes, parse_rule, plan, quantize, read_manifest, recompress_artifact, unpack_codes,
                   write_artifact)
from quant.compress import compress_smallest, compressor_names
from quant.gptq import gptq_codes
from quant.intn import search_clip, unzigzag, zigzag
from quant.packing import packed_size
from quant.schemes import EncodeOptions
from conftest import named_roles


def trained_like(rows: int, cols: int, seed: int = 0) -> torch.Tensor:
    """Gaussian weights with a few heavy outliers, like trained matrices."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=g) * 0.02
    w.view(-1)[torch.randint(0, rows * cols, (max(1, rows * cols // 500),), generator=g)] *= 8
    return w


# ----------------------------------------------------------------------------- bit packing


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("count", [0, 1, 7, 8, 9, 1001])
def test_packing_round_trips_exactly(layout, bits, count):
    codes = torch.randint(0, 1 << bits, (count,), generator=torch.Generator().manual_seed(bits), dtype=torch.int32)
    stored = pack_codes(codes.to(torch.uint8), bits, layout)
    assert stored.dtype == torch.uint8 and stored.numel() == packed_size(count, bits, layout)
    assert torch.equal(unpack_codes(stored, bits, layout, count), codes.to(torch.uint8))


def test_dense_packing_really_packs():
    # 1000 six-bit codes take 750 bytes, not 1000, and the bit order is little-endian.
    assert packed_size(1000, 6, "bits") == 750 and packed_size(1000, 6, "planes") == 750
    assert pack_codes(torch.tensor([1, 2], dtype=torch.uint8), 4, "bits").tolist() == [0x21]
    assert pack_codes(torch.tensor([1, 0, 1], dtype=torch.uint8), 1, "planes").tolist() == [0b101]


def test_packing_rejects_bad_input():
    with pytest.raises(QuantError, match="does not fit in 3 bits"):
        pack_codes(torch.tensor([8], dtype=torch.uint8), 3, "bits")
    with pytest.raises(QuantError, match="needs 750 uint8 bytes"):
        unpack_codes(torch.zeros(749, dtype=torch.uint8), 6, "bits", 1000)
    with pytest.raises(QuantError, match="unknown code layout 'zigzag'"):
        pack_codes(torch.zeros(3, dtype=torch.uint8), 3, "zigzag")


# ----------------------------------------------------------------------------- intN, fp8, tied int4


@pytest.mark.parametrize("scheme", ["int4", "int5", "int6", "int7", "fp8e4m3", "int4g32", "int4g64"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_round_trip_within_stated_bound(scheme, dtype):
    w = trained_like(96, 128).to(dtype)
    w[3] = 0  # an all-zero row must decode to zeros
    s = get_scheme(scheme)
    out = s.decode(s.encode(w), tuple(w.shape), dtype)
    assert out.dtype == dtype and out.shape == w.shape
    err = float((out.float() - w.float()).abs().max())
    bound = s.error_bound(w)
    assert err <= bound and bound < 0.5 * float(w.float().abs().max())
    assert torch.all(out[3] == 0)


@pytest.mark.parametrize("shape", [(300,), (4, 6, 10), (1, 1)])
def test_intn_takes_any_rank(shape):
    w = torch.randn(shape)
    s = get_scheme("int6")
    out = s.decode(s.encode(w), shape, torch.float32)
    assert float((out - w).abs().max()) <= s.error_bound(w)


def test_fewer_bits_cost_more_error_and_fewer_bytes():
    w = trained_like(64, 256)
    errs, sizes = [], []
    for bits in (4, 5, 6, 7):
        s = get_scheme(f"int{bits}")
        enc = s.encode(w, EncodeOptions(layout="bits"))
        errs.append(float((s.decode(enc, (64, 256), torch.float32) - w).square().mean()))
        sizes.append(enc.parts["codes"].numel())
    assert errs == sorted(errs, reverse=True) and sizes == [64 * 256 * b // 8 for b in (4, 5, 6, 7)]


def test_clip_search_beats_plain_absmax():
    rows = trained_like(128, 512, seed=3)
    for qmax in (7, 15, 31):
        q_plain, s_plain = search_clip(rows, qmax, ratios=(1.0,))
        q, s = search_clip(rows, qmax)
        plain = (q_plain * s_plain[:, None] - rows).square().sum(dim=1)
        searched = (q * s[:, None] - rows).square().sum(dim=1)
        assert torch.all(searched <= plain) and float(searched.sum()) < 0.95 * float(plain.sum())


def test_gptq_lowers_output_error_against_rounding():
    g = torch.Generator().manual_seed(0)
    # Correlated inputs: the case where spreading error across columns pays.
    x = torch.randn(2048, 64, generator=g) @ (torch.eye(64) + 0.5 * torch.randn(64, 64, generator=g))
    hessian = x.T @ x / x.shape[0]
    w = trained_like(48, 64, seed=1)
    s = get_scheme("int4")
    rtn = s.decode(s.encode(w), (48, 64), torch.float32)
    enc = s.encode(w, EncodeOptions(hessian=hessian))
    gptq = s.decode(enc, (48, 64), torch.float32)
    assert enc.meta["gptq"] is True

    def output_error(wq):
        return float(((x @ (w - wq).T) ** 2).mean())

    assert output_error(gptq) < 0.8 * output_error(rtn)
    assert float((gptq - w).abs().max()) <= s.error_bound(w, EncodeOptions(hessian=hessian))
    with pytest.raises(QuantError, match="Hessian is \\[3, 3\\]"):
        gptq_codes(w, torch.eye(3), torch.ones(48), 7)


def test_fp8_clamps_instead_of_overflowing():
    w = torch.tensor([[1e-6, -3.0, 2.0, 0.0], [5.0, 5.0, -5.0, 1e-3]])
    s = get_scheme("fp8e4m3")
    out = s.decode(s.encode(w), (2, 4), torch.float32)
    assert torch.isfinite(out).all() and float((out - w).abs().max()) <= s.error_bound(w)


def test_tied_int4_is_the_onnx_layout():
    w = trained_like(8, 64)
    enc = get_scheme("int4g32").encode(w)
    packed, scale = enc.parts["packed"], enc.parts["scale"]
    assert packed.shape == (8, 2, 16) and packed.dtype == torch.uint8
    assert scale.shape == (8, 2) and scale.dtype == torch.float16
    # Unsigned nibbles, code = round(w/s) + 8, the even column in the low nibble.
    blocks = w.reshape(8, 2, 32)
    codes = torch.clamp(torch.round(blocks / scale.float()[:, :, None]), -7, 7).to(torch.int32) + 8
    expected = codes[:, :, 0::2] | (codes[:, :, 1::2] << 4)
    assert torch.equal(packed.to(torch.int32), expected)
    with pytest.raises(QuantError, match="multiple of 32"):
        get_scheme("int4g32").encode(torch.randn(4, 48))


def test_tied_embedding_is_stored_once():
    model = build("ar", {"num_layers": 1, "model_dim": 64, "num_heads": 2, "num_kv_heads": 1, "vocab_size": 256})
    sd = model.state_dict()
    assert "lm_head.weight" not in sd  # tied: one table serves lookup and head
    meta = {"variant": "ar"}
    roles = model.checked_roles()
    with_emb = encode_artifact(sd, rule="emb=int4g32,other=fp32", roles=roles, meta=meta, compressor="none")
    without = encode_artifact({k: v for k, v in sd.items() if k != "tok_emb.weight"}, rule="emb=int4g32,other=fp32",
                              roles={k: v for k, v in roles.items() if k != "tok_emb.weight"}, meta=meta,
                              compressor="none")
    table = 256 * 64 // 2 + 2 * 256 * (64 // 32)
    assert table <= len(with_emb) - len(without) < table + 400  # + its manifest entry


# ----------------------------------------------------------------------------- rules


def test_group_rule_routes_every_tensor():
    model = build("ar", {"num_layers": 2, "model_dim": 64, "num_heads": 2, "num_kv_heads": 1,
                         "tie_embeddings": False})
    routes = plan(model.state_dict(), "emb=int4g32,head=int7,attn=int6,mlp=int5,other=int8,small=fp16",
                  roles=model.checked_roles())
    assert routes["tok_emb.weight"] == "int4g32" and routes["lm_head.weight"] == "int7"
    assert routes["blocks.0.attn.c_k.weight"] == "int6" and routes["blocks.1.mlp.proj.weight"] == "int5"
    assert routes["blocks.0.attn.q_gain"] == "fp32" and routes["skip_weights"] == "fp32"


def test_rule_spec_is_canonical():
    a = parse_rule("attn=int6, mlp=int6,emb=int4g32")
    b = parse_rule("emb=int4g32,mlp=int6,attn=int6,other=int8,small=fp16,control=fp32,layout=planes")
    assert a.spec == b.spec
    assert a.spec.startswith("emb=int4g32,head=int8,attn=int6,mlp=int6,other=int8,small=fp16,control=fp32,")
    assert parse_rule("fp8").spec == parse_rule("other=fp8e4m3").spec
    assert parse_rule("int6").groups["emb"] == "int6"
    assert parse_rule("int5,gptq=1,layout=bytes").spec == parse_rule("other=int5,layout=bytes,gptq=1").spec


@pytest.mark.parametrize("text, message", [
    ("emb=int3", "unknown quantization scheme 'int3'"),
    ("colour-x=int6", "rule group 'colour-x' is not a role name"),
    ("attn", "unknown quantization rule 'attn'"),
    ("int6,attn", "'attn' is not key=value or a scheme name"),
    ("raw", "only for non-float"),
    ("attn=", "not key=value"),
    ("other=raw", "only for non-float"),
    ("layout=zigzag", "unknown code layout"),
    ("gptq=yes", "gptq must be 0 or 1"),
])
def test_bad_rules_are_named(text, message):
    with pytest.raises(QuantError, match=message):
        parse_rule(text)


def test_gptq_rule_needs_hessians():
    sd = {"blocks.0.mlp.fc.weight": torch.randn(8, 16)}
    with pytest.raises(QuantError, match="no calibration Hessians"):
        quantize(sd, "other=int4,gptq=1", roles=named_roles(sd))
    q = quantize(sd, "other=int4,gptq=1", roles=named_roles(sd), hessians={"blocks.0.mlp.fc.weight": torch.eye(16)})
    assert q["blocks.0.mlp.fc.weight"].enc.meta["gptq"] is True
    assert dequantize(q)["blocks.0.mlp.fc.weight"].shape == (8, 16)


# ----------------------------------------------------------------------------- artifacts and compressors


@pytest.mark.parametrize("layout", LAYOUTS)
def test_mixed_artifact_round_trips(tmp_path, layout):
    model = build("ar", {"num_layers": 2, "model_dim": 64, "num_heads": 2, "num_kv_heads": 1})
    sd = model.state_dict()
    rule = f"emb=int4g32,attn=int6,mlp=int5,other=int8,small=fp16,layout={layout}"
    info = write_artifact(tmp_path / "m.golf", sd, rule=rule, roles=model.checked_roles(), meta={}, compressor="auto")
    manifest = read_manifest(info.path)
    assert manifest["rule"] == parse_rule(rule).spec
    art = decode_artifact(info.path.read_bytes())
    assert art.compressor in compressor_names()
    expected = dequantize(quantize(sd, rule, roles=model.checked_roles()))
    assert all(torch.equal(art.state_dict[k], expected[k]) for k in sd)


def test_auto_picks_the_smallest():
    data = bytes(range(256)) * 64 + b"\0" * 5000
    name, out = compress_smallest(data)
    sizes = {n: len(compress_smallest(data, [n])[1]) for n in compressor_names()}
    assert len(out) == min(sizes.values()) and sizes[name] == len(out)


def test_hand_broken_intn_meta_is_a_clean_error():
    sd = {"w": torch.randn(8, 16)}
    data = bytearray(encode_artifact(sd, rule="int6", roles={"w": "other"}, meta={}, compressor="none"))
    at = data.find(b'"rows":8')
    assert at > 0
    data[at:at + 8] = b'"rows":9'
    data[-32:] = hashlib.sha256(bytes(data[:-32])).digest()
    with pytest.raises(ArtifactError, match="rows/cols 9x16 do not fit"):
        decode_artifact(bytes(data))


def test_recompress_keeps_the_body_and_changes_only_the_frame():
    sd = {"blocks.0.mlp.fc.weight": trained_like(32, 64)}
    roles = named_roles(sd)
    data = encode_artifact(sd, rule="int6", roles=roles, meta={"x": 1}, compressor="zstd-22")
    again = recompress_artifact(data, "lzma")
    assert again == encode_artifact(sd, rule="int6", roles=roles, meta={"x": 1}, compressor="lzma")
    assert torch.equal(decode_artifact(again).state_dict["blocks.0.mlp.fc.weight"],
                       decode_artifact(data).state_dict["blocks.0.mlp.fc.weight"])


def test_zigzag_puts_small_magnitudes_first_and_inverts():
    q = torch.arange(-31, 32)
    z = zigzag(q)
    assert z[31:33].tolist() == [0, 2] and zigzag(torch.tensor([-1, 1, -2])).tolist() == [1, 2, 3]
    assert sorted(z.tolist()) == list(range(63)) and torch.equal(unzigzag(z), q.to(torch.int32))
