"""`golf inspect`: byte attribution that sums to the file, raw bytes, reconstruction error, CLI."""

from __future__ import annotations

import hashlib
import json
import os
import struct

import numpy as np
import pytest
import torch

import quant
from conftest import named_roles
from golf.cli import main
from golf.errors import GolfError
from golf.inspect import default_reference, inspect_artifact, largest_remainder

ROW_KEYS = {"name", "kind", "scheme", "role", "shape", "params", "raw_bytes", "alone_bytes", "bytes", "share",
            "bytes_per_param", "rel_error"}
TOTAL_KEYS = {"params", "bytes", "bytes_per_param", "limit", "headroom", "rule", "compressor", "header_bytes",
              "digest_bytes", "body_bytes", "body_raw_bytes"}


def state_dict() -> dict[str, torch.Tensor]:
    """Shaped like the baseline's kinds of tensors: big matrices (int8 under the official rule),
    small floats (fp16), a control tensor (fp32), an integer buffer (raw) and an all-zero one."""
    g = torch.Generator().manual_seed(0)
    return {
        "tok_emb.weight": torch.randn(320, 256, generator=g),
        "blocks.0.mlp.fc.weight": torch.randn(256, 300, generator=g) * 0.5,
        "blocks.0.attn.c_q.weight": torch.randn(64, 64, generator=g),
        "blocks.0.attn_scale": torch.rand(64, generator=g),
        "blocks.0.zero_bias": torch.zeros(16),
        "steps": torch.tensor([7, 11], dtype=torch.int64),
    }


def write(path, rule="int8", compressor="zstd-22"):
    sd = state_dict()
    quant.write_artifact(path, sd, rule=rule, roles=named_roles(sd), meta={"model": {"variant": "ar"}},
                         compressor=compressor)
    return path


def run_cli(argv, capsys):
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("compressor", ["zstd-22", "zlib-9", "lzma", "none"])
def test_rows_sum_exactly_to_the_file_size(tmp_path, compressor):
    path = write(tmp_path / "m.golf", compressor=compressor)
    report = inspect_artifact(path)
    assert sum(r["bytes"] for r in report["rows"]) == os.path.getsize(path) == report["totals"]["bytes"]
    assert report["totals"]["compressor"] == compressor and report["totals"]["rule"] == "int8"
    kinds = [r["kind"] for r in report["rows"]]
    assert kinds.count("tensor") == len(state_dict()) and kinds[-2:] == ["manifest", "container"]
    raw = quant.open_raw(path)
    assert raw.header_nbytes + raw.body_nbytes + raw.digest_nbytes == raw.nbytes == os.path.getsize(path)
    assert report["rows"][-1]["bytes"] == raw.header_nbytes + 32
    # The compressed body is split over the manifest and the tensors, nothing else.
    assert sum(r["bytes"] for r in report["rows"][:-1]) == raw.body_nbytes
    if compressor == "none":  # nothing to estimate: every segment is its own raw size
        assert all(r["bytes"] == r["raw_bytes"] == r["alone_bytes"] for r in report["rows"])


def test_payload_bytes_no_part_claims_get_their_own_row(tmp_path):
    # Writers pack without gaps; a foreign one might not, and the rows must still add up.
    raw = quant.open_raw(write(tmp_path / "m.golf", compressor="zlib-9"))
    body = raw.body + bytes(range(100))
    packed = quant.compress("zlib-9", body)
    head = (tmp_path / "m.golf").read_bytes()[: raw.header_nbytes - 16] + struct.pack("<QQ", len(body), len(packed))
    data = head + packed
    (tmp_path / "gap.golf").write_bytes(data + hashlib.sha256(data).digest())
    report = inspect_artifact(tmp_path / "gap.golf")
    gap = [r for r in report["rows"] if r["kind"] == "unreferenced"]
    assert len(gap) == 1 and gap[0]["raw_bytes"] == 100 and gap[0]["bytes"] > 0
    assert sum(r["bytes"] for r in report["rows"]) == os.path.getsize(tmp_path / "gap.golf")


def test_raw_bytes_are_the_manifest_part_sizes(tmp_path):
    path = write(tmp_path / "m.golf")
    manifest = quant.read_manifest(path)
    report = inspect_artifact(path)
    tensors = {r["name"]: r for r in report["rows"] if r["kind"] == "tensor"}
    assert set(tensors) == set(manifest["tensors"])
    for name, entry in manifest["tensors"].items():
        assert tensors[name]["raw_bytes"] == sum(p["nbytes"] for p in entry["parts"].values())
        assert tensors[name]["scheme"] == entry["scheme"] and tensors[name]["shape"] == entry["shape"]
        assert tensors[name]["params"] == int(np.prod(entry["shape"]))
    assert report["totals"]["params"] == sum(t.numel() for t in state_dict().values())
    assert tensors["tok_emb.weight"]["scheme"] == "int8" and tensors["steps"]["scheme"] == "raw"
    # Sorted by attributed bytes, largest first, by default; by name on request.
    in_bytes = [r["bytes"] for r in tensors.values()]
    assert in_bytes == sorted(in_bytes, reverse=True)
    by_name = [r["name"] for r in inspect_artifact(path, sort="name")["rows"] if r["kind"] == "tensor"]
    assert by_name == sorted(by_name)


def test_largest_remainder_is_exact_and_proportional():
    assert largest_remainder(10, [1, 1, 1]) == [4, 3, 3]  # ties go to the earlier index
    assert largest_remainder(100, [50, 30, 20]) == [50, 30, 20]
    assert largest_remainder(7, [0, 0]) == [4, 3]
    assert largest_remainder(0, []) == []
    rng = np.random.default_rng(0)
    for _ in range(200):
        weights = [int(w) for w in rng.integers(0, 10_000, size=int(rng.integers(1, 30)))]
        total = int(rng.integers(0, 10**7))
        out = largest_remainder(total, weights)
        assert sum(out) == total
        if sum(weights):
            assert all(abs(o - total * w / sum(weights)) < 1 for o, w in zip(out, weights, strict=True))


def test_rel_error_is_zero_against_itself_and_the_hand_value_for_int8(tmp_path):
    raw = write(tmp_path / "raw.golf", rule="fp32", compressor="none")
    same = inspect_artifact(raw, reference=raw)
    assert [r["rel_error"] for r in same["rows"] if r["kind"] == "tensor"] == [0.0] * len(state_dict())

    q = write(tmp_path / "q.golf", rule="int8", compressor="zlib-9")
    report = inspect_artifact(q, reference=raw)
    assert report["reference"] == str(raw)
    decoded = quant.read_artifact(q).state_dict
    for row in report["rows"]:
        if row["kind"] != "tensor":
            assert row["rel_error"] is None
            continue
        w = state_dict()[row["name"]].double().numpy().ravel()
        w_hat = decoded[row["name"]].double().numpy().ravel()
        norm = np.sqrt(np.sum(w * w))
        expected = np.sqrt(np.sum((w - w_hat) ** 2)) / norm if norm else 0.0
        assert row["rel_error"] == pytest.approx(expected, rel=1e-9, abs=1e-15), row["name"]
    errors = {r["name"]: r["rel_error"] for r in report["rows"] if r["kind"] == "tensor"}
    assert 0 < errors["tok_emb.weight"] < 0.05  # int8 per row: small but not zero
    assert errors["blocks.0.attn_scale"] == 0.0 and errors["steps"] == 0.0  # fp32 and raw are exact
    assert errors["blocks.0.zero_bias"] == 0.0  # zero stays zero


def test_reference_missing_or_misshapen_tensors_are_clear_errors(tmp_path):
    q = write(tmp_path / "q.golf")
    sd = state_dict()
    del sd["steps"]
    quant.write_artifact(tmp_path / "fewer.golf", sd, rule="fp32", roles=named_roles(sd), meta={}, compressor="none")
    with pytest.raises(GolfError, match="lacks 1 of the artifact's tensors: steps"):
        inspect_artifact(q, reference=tmp_path / "fewer.golf")
    sd = state_dict()
    sd["tok_emb.weight"] = sd["tok_emb.weight"].T.contiguous()
    quant.write_artifact(tmp_path / "turned.golf", sd, rule="fp32", roles=named_roles(sd), meta={}, compressor="none")
    with pytest.raises(GolfError, match=r"tok_emb.weight: shape \[320, 256\] in the artifact but \[256, 320\]"):
        inspect_artifact(q, reference=tmp_path / "turned.golf")


def test_run_folder_picks_up_model_raw_as_reference(tmp_path, capsys):
    run = tmp_path / "run"
    write(run / "model.golf")
    write(run / "model_raw.golf", rule="fp32", compressor="none")
    assert default_reference(run / "model.golf") == run / "model_raw.golf"
    assert default_reference(run / "model_raw.golf") is None  # never the artifact itself
    code, out, _ = run_cli(["inspect", str(run), "--json"], capsys)
    report = json.loads(out)
    assert code == 0 and report["reference"] == str(run / "model_raw.golf") and report["note"] is None
    assert report["artifact"] == str(run / "model.golf")
    assert all(r["rel_error"] is not None for r in report["rows"] if r["kind"] == "tensor")

    code, out, _ = run_cli(["inspect", str(run / "model_raw.golf"), "--json"], capsys)
    report = json.loads(out)
    assert code == 0 and report["reference"] is None and "--reference" in report["note"]
    assert all(r["rel_error"] is None for r in report["rows"])


def test_json_has_the_documented_keys(tmp_path, capsys):
    path = write(tmp_path / "m.golf")
    code, out, err = run_cli(["inspect", str(path), "--json", "--top", "1"], capsys)
    assert code == 0 and err == ""  # no progress bar with --json
    report = json.loads(out)
    assert set(report) == {"artifact", "reference", "note", "variant", "rows", "totals", "by_role", "roles_note",
                           "options"}
    assert set(report["totals"]) == TOTAL_KEYS
    assert all(set(r) == ROW_KEYS for r in report["rows"])
    assert len(report["rows"]) == len(state_dict()) + 2  # --top is for text only
    t = report["totals"]
    assert t["headroom"] == 16_000_000 - os.path.getsize(path) and t["limit"] == 16_000_000
    assert t["bytes_per_param"] == pytest.approx(os.path.getsize(path) / t["params"])
    assert sum(r["share"] for r in report["rows"]) == pytest.approx(1.0)
    assert report["variant"] == "ar"


def test_text_report_with_top(tmp_path, capsys):
    run = tmp_path / "run"
    write(run / "model.golf", compressor="lzma")
    write(run / "model_raw.golf", rule="fp32", compressor="none")
    code, out, _ = run_cli(["inspect", str(run), "--top", "2", "--no-progress"], capsys)
    lines = out.splitlines()
    assert code == 0 and "int8+lzma" in lines[0] and lines[1].startswith("reference")
    assert "rel.error" in lines[2] and f"({len(state_dict()) - 2} more tensors)" in out
    assert lines[-2].startswith("total") and f"{os.path.getsize(run / 'model.golf'):,}" in lines[-2]
    assert lines[-1].startswith("headroom") and "under" in lines[-1]
    assert sum(1 for line in lines if line.startswith(("tok_emb", "blocks", "steps"))) == 2
    # Hand-made tensors with no model description: no roles, and the report says why.
    assert "note       no roles: artifact manifest has no model description" in out


def test_rows_and_totals_carry_the_models_tensor_roles(tmp_path, capsys):
    from golf.models import build

    model = build("ar", {"num_layers": 2, "model_dim": 64, "num_heads": 4, "num_kv_heads": 2})
    meta = {"model": {"variant": "ar", "config": model.config_dict()}}
    path = tmp_path / "ar.golf"
    quant.write_artifact(path, model.state_dict(), rule="emb=int8,attn=int6", roles=model.checked_roles(), meta=meta)
    code, out, _ = run_cli(["inspect", str(path), "--json"], capsys)
    report = json.loads(out)
    rows = {r["name"]: r for r in report["rows"] if r["kind"] == "tensor"}
    assert rows["tok_emb.weight"]["role"] == "emb" and rows["blocks.1.attn.c_q.weight"]["role"] == "attn"
    assert rows["blocks.0.attn.q_gain"]["role"] == "control" and report["roles_note"] is None
    assert set(report["by_role"]) == {"emb", "attn", "mlp", "control"}
    assert report["by_role"]["attn"]["tensors"] == 8
    assert sum(g["bytes"] for g in report["by_role"].values()) == sum(r["bytes"] for r in rows.values())


@pytest.mark.parametrize("damage,message", [
    (lambda d: d[: len(d) // 2], "truncated"),
    (lambda d: d[:80] + bytes([d[80] ^ 0x01]) + d[81:], "corrupted"),
    (lambda d: b"PK\x03\x04" + d[4:], "not a golf artifact"),
])
def test_bad_artifacts_are_one_line_errors(tmp_path, capsys, damage, message):
    bad = tmp_path / "bad.golf"
    bad.write_bytes(damage(write(tmp_path / "good.golf").read_bytes()))
    code, out, err = run_cli(["inspect", str(bad)], capsys)
    assert code == 2 and out == ""
    assert err.startswith(f"golf: error: {bad}: ") and message in err and err.count("\n") == 1
    code, _, err = run_cli(["inspect", str(tmp_path / "good.golf"), "--reference", str(bad)], capsys)
    assert code == 2 and message in err and err.count("\n") == 1
    code, _, err = run_cli(["inspect", str(tmp_path / "nope.golf")], capsys)
    assert code == 2 and "not found" in err and err.count("\n") == 1
