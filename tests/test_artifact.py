"""The artifact container: layout, round trips, determinism and every way a file can be bad."""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import zstandard

from quant import (ArtifactError, QuantError, decode_artifact, dequantize, encode_artifact, quantize,
                   read_artifact, read_manifest, write_artifact)
from quant.compress import compress
from conftest import named_roles

REPO = Path(__file__).resolve().parents[1]
META = {"variant": "ar", "config": {"model_dim": 64}, "tokenizer_sha256": "00" * 32}


def model_state_dict() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "tok_emb.weight": torch.randn(512, 160, generator=g) * 0.02,
        "blocks.0.attn.c_q.weight": torch.randn(256, 288, generator=g) * 0.05,
        "blocks.0.mlp.fc.weight": (torch.randn(300, 256, generator=g) * 0.05).bfloat16(),
        "blocks.0.attn.q_gain": torch.full((4,), 1.5),
        "skip_weights": torch.ones(2, 64),
        "blocks.0.norm.weight": torch.randn(64, generator=g),
        "step": torch.tensor(11),
    }


def tiny_state_dict() -> dict[str, torch.Tensor]:
    """A few hundred bytes of artifact, small enough to flip every byte of."""
    return {"w": torch.linspace(-1, 1, 24).reshape(4, 6), "q_gain": torch.tensor([0.5, 2.0]),
            "ids": torch.arange(5, dtype=torch.int32)}


def frame(body_raw_len: int, packed: bytes, *, version: int = 1, compressor: bytes = b"zstd-22") -> bytes:
    """Build a container by hand from the documented layout, with a valid checksum."""
    data = b"GOLF" + struct.pack("<HB", version, len(compressor)) + compressor
    data += struct.pack("<QQ", body_raw_len, len(packed)) + packed
    return data + hashlib.sha256(data).digest()


def body_of(manifest: dict, payload: bytes = b"") -> bytes:
    m = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    return struct.pack("<I", len(m)) + m + payload


def unpack(data: bytes) -> tuple[dict, bytes]:
    """Manifest and payload of a zstd-22 artifact, parsed by hand from the documented layout."""
    assert data[:4] == b"GOLF" and struct.unpack_from("<H", data, 4)[0] == 1
    n = data[6]
    assert data[7:7 + n] == b"zstd-22"
    raw_len, packed_len = struct.unpack_from("<QQ", data, 7 + n)
    assert 23 + n + packed_len + 32 == len(data)
    assert hashlib.sha256(data[:-32]).digest() == data[-32:]
    body = zstandard.ZstdDecompressor().decompress(data[23 + n:23 + n + packed_len])
    assert len(body) == raw_len
    (mlen,) = struct.unpack_from("<I", body)
    return json.loads(body[4:4 + mlen]), body[4 + mlen:]


# ----------------------------------------------------------------------------- round trips


def test_round_trip_matches_in_memory_quantization(tmp_path):
    sd = model_state_dict()
    info = write_artifact(tmp_path / "run" / "model.golf", sd, roles=named_roles(sd), meta=META)
    data = info.path.read_bytes()
    assert info.nbytes == len(data) and info.sha256 == hashlib.sha256(data).hexdigest()
    assert [p.name for p in info.path.parent.iterdir()] == ["model.golf"]  # no temp file left behind
    art = read_artifact(info.path)
    assert (art.meta, art.rule, art.compressor, art.nbytes) == (META, "int8", "zstd-22", len(data))
    expected = dequantize(quantize(sd, "int8", roles=named_roles(sd)))
    assert sorted(art.state_dict) == sorted(sd)
    for name, t in expected.items():
        got = art.state_dict[name]
        assert got.dtype == sd[name].dtype and got.shape == sd[name].shape
        assert torch.equal(got, t), name
    art.state_dict["step"] += 1  # tensors own writable memory
    assert read_manifest(info.path) == art.manifest


def test_manifest_and_payload_follow_the_documented_layout():
    sd = model_state_dict()
    manifest, payload = unpack(encode_artifact(sd, roles=named_roles(sd), meta=META))
    assert (manifest["format"], manifest["format_version"], manifest["rule"], manifest["meta"]) == \
        ("golf-artifact", 1, "int8", META)
    assert list(manifest["tensors"]) == sorted(sd)
    c_q = manifest["tensors"]["blocks.0.attn.c_q.weight"]
    assert (c_q["scheme"], c_q["shape"], c_q["dtype"], c_q["meta"]) == ("int8", [256, 288], "float32",
                                                                         {"granularity": "row"})
    assert c_q["parts"]["q"]["dtype"] == "int8" and c_q["parts"]["scale"]["dtype"] == "float16"
    # Parts are packed back to back in sorted (tensor, part) order and fill the payload exactly.
    spans = [(p["offset"], p["nbytes"]) for _, t in sorted(manifest["tensors"].items())
             for _, p in sorted(t["parts"].items())]
    assert [o for o, _ in spans] == [sum(n for _, n in spans[:i]) for i in range(len(spans))]
    assert sum(n for _, n in spans) == len(payload)
    q = c_q["parts"]["q"]
    ref = quantize({"x": sd["blocks.0.attn.c_q.weight"]}, "int8", roles={"x": "attn"})["x"].enc.parts["q"]
    assert payload[q["offset"]:q["offset"] + q["nbytes"]] == ref.numpy().tobytes()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int8,
                                   torch.uint8, torch.int16, torch.int32, torch.int64, torch.bool])
def test_every_dtype_round_trips_exactly(dtype):
    base = torch.tensor([[-3.5, 0.0, 1.25], [7.0, -0.5, 100.0]])
    if dtype == torch.bool:
        base = base > 0
    sd = {"t": base.to(dtype), "scalar": base.to(dtype)[0, 0], "empty": base.to(dtype)[:, :0]}
    art = decode_artifact(encode_artifact(sd, roles=named_roles(sd), rule="fp32", meta={}))
    for name, t in sd.items():
        assert art.state_dict[name].dtype == dtype and torch.equal(art.state_dict[name], t)


# ----------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("compressor", ["zstd-22", "zlib-9", "lzma", "none"])
def test_same_input_same_bytes(compressor):
    sd = model_state_dict()
    first = encode_artifact(sd, roles=named_roles(sd), meta=META, compressor=compressor)
    assert encode_artifact(dict(reversed(list(sd.items()))), roles=named_roles(sd),
                           meta=dict(reversed(list(META.items()))),
                           compressor=compressor) == first
    assert decode_artifact(first).compressor == compressor


@pytest.mark.parametrize("rule", ["fp16", "bf16", "fp32", "int8"])
def test_passthrough_artifact_is_a_fixed_point(rule):
    sd = {k: v for k, v in model_state_dict().items() if v.numel() <= 65_536}  # no int8 under "int8"
    first = encode_artifact(sd, roles=named_roles(sd), rule=rule, meta=META)
    assert encode_artifact(decode_artifact(first).state_dict, roles=named_roles(sd), rule=rule, meta=META) == first


def test_same_bytes_in_a_fresh_process(tmp_path):
    code = ("import sys, torch; sys.path.insert(0, sys.argv[1]); from test_artifact import *; "
            "sd = model_state_dict(); sys.stdout.buffer.write(encode_artifact(sd, roles=named_roles(sd), meta=META))")
    out = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent)], cwd=REPO,
                         capture_output=True, check=True, env={**os.environ, "PYTHONHASHSEED": "123"})
    assert out.stdout == encode_artifact(model_state_dict(), roles=named_roles(model_state_dict()), meta=META)


# ----------------------------------------------------------------------------- bad files


def test_missing_file(tmp_path):
    with pytest.raises(ArtifactError, match="artifact not found"):
        read_artifact(tmp_path / "nope.golf")


def test_truncated_files_say_so():
    data = encode_artifact(model_state_dict(), roles=named_roles(model_state_dict()), meta=META)
    for cut in (0, 3, 10, 54, 55, 100, len(data) // 2, len(data) - 33, len(data) - 1):
        with pytest.raises(ArtifactError, match=r"truncated: expected (at least )?\d+ bytes, got \d+"):
            decode_artifact(data[:cut])


def test_every_flipped_byte_is_rejected():
    data = encode_artifact(tiny_state_dict(), roles=named_roles(tiny_state_dict()), meta={"n": 1})
    assert 100 < len(data) < 1000
    for i in range(len(data)):
        for mask in (0x01, 0x80, 0xFF):
            bad = bytearray(data)
            bad[i] ^= mask
            with pytest.raises(ArtifactError) as err:
                decode_artifact(bytes(bad))
            expected = "not a golf artifact" if i < 4 else "checksum mismatch|truncated"
            assert re.search(expected, str(err.value)), (i, mask, str(err.value))


def test_wrong_magic_and_trailing_bytes():
    data = encode_artifact(tiny_state_dict(), roles=named_roles(tiny_state_dict()), meta={})
    with pytest.raises(ArtifactError, match="not a golf artifact"):
        decode_artifact(b"PK\x03\x04" + data[4:])
    with pytest.raises(ArtifactError, match="corrupted: checksum mismatch"):
        decode_artifact(data + b"\0")


def test_newer_format_version_with_valid_checksum():
    data = encode_artifact(tiny_state_dict(), roles=named_roles(tiny_state_dict()), meta={})
    forged = data[:4] + struct.pack("<H", 2) + data[6:-32]
    forged += hashlib.sha256(forged).digest()
    with pytest.raises(ArtifactError) as err:
        decode_artifact(forged)
    assert str(err.value) == "artifact format v2 is newer than this golf supports (v1); upgrade golf"


def test_unknown_compressor():
    body = body_of({"format": "golf-artifact", "format_version": 1, "rule": "int8", "meta": {}, "tensors": {}})
    with pytest.raises(ArtifactError, match="unknown compressor 'brotli'"):
        decode_artifact(frame(len(body), body, compressor=b"brotli"))


def test_malformed_manifest():
    for body in (b"\x05\0\0\0{oops", b"\x02\0\0\0[]", b"\xff\0\0\0{}"):
        with pytest.raises(ArtifactError, match="malformed manifest"):
            decode_artifact(frame(len(body), compress("zstd-22", body)))


def test_part_outside_payload():
    part = {"dtype": "float32", "shape": [2], "offset": 4, "nbytes": 8}
    tensor = {"scheme": "fp32", "shape": [2], "dtype": "float32", "meta": {}, "parts": {"data": part}}
    body = body_of({"format": "golf-artifact", "format_version": 1, "rule": "fp32", "meta": {},
                    "tensors": {"x": tensor}}, payload=b"\0" * 8)
    with pytest.raises(ArtifactError, match=r"part x.data at bytes 4..12 is outside the 8-byte payload"):
        decode_artifact(frame(len(body), compress("zstd-22", body)))


def test_body_larger_than_declared_is_not_decompressed():
    body = body_of({"format": "golf-artifact", "format_version": 1, "rule": "int8", "meta": {}, "tensors": {}})
    for name in ("zstd-22", "zlib-9", "lzma"):
        with pytest.raises(ArtifactError, match="cannot decompress body"):
            decode_artifact(frame(10, compress(name, body), compressor=name.encode()))


def test_meta_must_be_json():
    with pytest.raises(ArtifactError, match="not plain JSON"):
        encode_artifact(tiny_state_dict(), roles=named_roles(tiny_state_dict()), meta={"x": float("nan")})
    with pytest.raises(QuantError, match="unknown compressor"):
        encode_artifact(tiny_state_dict(), roles=named_roles(tiny_state_dict()), meta={}, compressor="brotli")


# ----------------------------------------------------------------------------- size


def test_zstd_int8_artifact_is_smaller_than_its_payload():
    sd = {"w": torch.randn(512, 512, generator=torch.Generator().manual_seed(1))}
    data = encode_artifact(sd, roles=named_roles(sd), meta={})
    manifest, payload = unpack(data)
    assert len(payload) == 512 * 512 + 512 * 2
    assert len(data) < len(payload)
