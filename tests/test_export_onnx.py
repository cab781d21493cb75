"""ONNX export: onnxruntime computes what torch computes, and the tied 4-bit table is stored once."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

import quant
from conftest import REPO, run_cli, run_trainer
from export.onnx_export import decode_path, export_onnx
from export.parity import LOGIT_TOLERANCE, parity_tokens
from export.runtime import OnnxAR
from golf import embedded, models
from golf.errors import GolfError
from golf.score import model_from_artifact

TIED_RULE = "emb=int4g32,attn=int8,mlp=fp8"


@pytest.fixture(scope="module")
def int4_run(tmp_path_factory):
    """A briefly trained model whose tied embedding is int4g32 (the demo's rule, tiny shape). A wide
    embedding init gives it logits of a few units after 8 steps, so parity is not checked on flat ones."""
    run_dir = tmp_path_factory.mktemp("onnx") / "run"
    proc = run_trainer(run_dir, {"ITERATIONS": "8", "MAX_WALLCLOCK_SECONDS": "0", "QUANT": TIED_RULE,
                                 "TIED_EMBED_INIT_STD": "0.5"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return run_dir


@pytest.fixture(scope="module")
def exported(int4_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx_out") / "model.onnx"
    return export_onnx(int4_run / "model.golf", out), out


def random_artifact(path, rule, **config):
    """A small AR model with every weight randomized (so a wrong scale or layout shows), written by `rule`."""
    base = {"vocab_size": 1024, "num_layers": 3, "model_dim": 64, "num_heads": 4, "num_kv_heads": 2}
    torch.manual_seed(0)
    model = models.build("ar", {**base, **config})
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn_like(p) * (0.5 if "tok_emb" in name else 0.08) + (1.0 if p.ndim == 1 else 0.0))
    meta = {"model": {"variant": "ar", "config": model.config_dict()},
            "tokenizer": {"sha256": embedded.EMBEDDED_TOKENIZER_SHA256}, "eval": {"seq_len": 64}}
    quant.write_artifact(path, model.state_dict(), rule=rule, roles=model.checked_roles(), meta=meta)
    return path


def test_onnxruntime_logits_match_torch_and_greedy_tokens_agree(exported, int4_run):
    report, out = exported
    assert report["parity"]["ok"], report["parity"]
    stored = quant.read_artifact(int4_run / "model.golf")
    model = model_from_artifact(stored.meta, stored.state_dict).eval()
    onnx_model = OnnxAR(decode_path(out), out)
    ids = parity_tokens(3, 64)
    with torch.inference_mode():
        reference = model.logits(ids).numpy()
    diff = np.abs(onnx_model.logits(ids.numpy()) - reference).max()
    assert diff < LOGIT_TOLERANCE, diff  # measured ~1e-5; the tolerance the export states
    assert reference.std(axis=-1).mean() > 1.0  # not flat logits, which would match anything
    prompt = ids[:1, :12]
    torch_tokens = model.generate(prompt, 32, temperature=0)
    assert torch.equal(onnx_model.generate(prompt, 32, temperature=0), torch_tokens)
    # Sampling with the same seed draws the same tokens from either runtime.
    sampled = [m.generate(prompt, 16, temperature=1.0, top_k=20, generator=torch.Generator().manual_seed(5))
               for m in (model, onnx_model)]
    assert torch.equal(*sampled)


def test_the_tied_int4_table_is_stored_once_and_read_by_both_contrib_ops(exported, int4_run):
    report, out = exported
    table = quant.read_quantized(int4_run / "model.golf").tensors["tok_emb.weight"]
    packed = table.enc.parts["packed"].numpy().tobytes()
    scale = table.enc.parts["scale"].numpy().tobytes()
    data = out.read_bytes()
    assert data.count(packed) == 1 and data.count(scale) == 1  # the artifact's bytes, once
    assert decode_path(out).read_bytes().count(packed) == 0  # the decode graph reads them from OUT

    graph = onnx.load(out).graph
    init = {t.name: t for t in graph.initializer}
    packed_name = next(n for n, t in init.items() if t.raw_data == packed)
    scale_name = next(n for n, t in init.items() if t.raw_data == scale)
    assert init[packed_name].data_type == onnx.TensorProto.UINT8 and list(init[packed_name].dims) == [1024, 2, 16]
    nodes = {n.op_type: n for n in graph.node if n.domain == "com.microsoft"}
    assert set(nodes) == {"GatherBlockQuantized", "MatMulNBits"}
    gbq, mmn = nodes["GatherBlockQuantized"], nodes["MatMulNBits"]
    assert gbq.input[0] == mmn.input[1] == packed_name
    producers = {o: n for n in graph.node for o in n.output}
    cast = producers[mmn.input[2]]  # the fp16 scales as fp32, and GBQ's one Reshape of them
    assert cast.op_type == "Cast" and cast.input[0] == scale_name
    assert producers[gbq.input[2]].op_type == "Reshape" and producers[gbq.input[2]].input[0] == mmn.input[2]
    reads = [n for n in graph.node if packed_name in n.input]
    assert len(reads) == 2  # nothing else touches the table: no Gather of a dequantized copy

    # The file is one copy of every weight plus a graph smaller than the table: no room for a second copy.
    assert report["bytes_tied_table"] == len(packed) + len(scale)
    assert report["tensors"]["tok_emb.weight"] == len(packed) + len(scale)
    overhead = len(data) - report["bytes_weights"]  # graph, names, constants, protobuf framing
    assert 0 < overhead < min(len(packed) + len(scale), 64_000), overhead
    assert graph.initializer and onnx.load(out).ir_version == 10
    assert {o.domain: o.version for o in onnx.load(out).opset_import} == {"": 21, "com.microsoft": 1}


def test_the_standard_fallback_uses_no_contrib_op_and_still_stores_the_table_once(int4_run, tmp_path):
    out = tmp_path / "std.onnx"
    report = export_onnx(int4_run / "model.golf", out, contrib=False)
    assert report["parity"]["ok"], report["parity"]
    model = onnx.load(out)
    assert all(n.domain in ("", "ai.onnx") for n in model.graph.node)
    assert [o.domain for o in model.opset_import] == [""]
    packed = quant.read_quantized(int4_run / "model.golf").tensors["tok_emb.weight"].enc.parts["packed"].numpy()
    signed = (packed ^ np.uint8(0x88)).tobytes()  # the same nibbles as two's complement int4
    assert out.read_bytes().count(signed) == 1


@pytest.mark.parametrize("rule,config", [
    ("int8", {}),
    ("fp16", {}),
    ("bf16", {}),
    ("emb=int4g64,attn=int6,mlp=int5,layout=bits", {}),
    ("emb=int4g32,head=int4g32,attn=int4g32,mlp=int4g64", {"num_kv_heads": 4}),
    ("emb=int8,head=fp8,attn=int7,mlp=int4", {"tie_embeddings": False, "num_layers": 1}),
])
def test_every_scheme_exports_to_what_torch_dequantizes(tmp_path, rule, config):
    artifact = random_artifact(tmp_path / "m.golf", rule, **config)
    for contrib in (True, False):
        report = export_onnx(artifact, tmp_path / f"m{int(contrib)}.onnx", contrib=contrib)
        assert report["parity"]["ok"], (rule, contrib, report["parity"])
        assert report["parity"]["greedy_equal"]


def test_export_cli_json_and_clean_failures(int4_run, tmp_path, capsys):
    out = tmp_path / "cli" / "m.onnx"
    assert run_cli(["export", str(int4_run), "--onnx", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["parity"]["ok"] and out.is_file() and decode_path(out).is_file()
    assert report["bytes_onnx"] == out.stat().st_size
    with pytest.raises(GolfError, match="is a folder"):
        run_cli(["export", str(int4_run), "--onnx", str(tmp_path)])
    with pytest.raises(quant.QuantError, match="artifact not found"):
        run_cli(["export", str(tmp_path / "nope.golf"), "--onnx", str(tmp_path / "x.onnx")])
    assert not (tmp_path / "x.onnx").exists() and not list(tmp_path.glob(".x.onnx*"))


def test_only_the_ar_family_exports_and_a_family_without_generate_says_so(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "tests" / "plugins"))
    monkeypatch.setenv(models.PLUGINS_ENV, "toybits")
    toy = models.build("toybits", {"vocab_size": 1024, "model_dim": 32})
    meta = {"model": {"variant": "toybits", "config": toy.config_dict()},
            "tokenizer": {"sha256": embedded.EMBEDDED_TOKENIZER_SHA256}}
    artifact = tmp_path / "toy.golf"
    quant.write_artifact(artifact, toy.state_dict(), rule="int8", roles=toy.checked_roles(), meta=meta)
    with pytest.raises(GolfError, match="only the 'ar' family has an ONNX graph; this artifact is 'toybits'"):
        export_onnx(artifact, tmp_path / "toy.onnx")
    with pytest.raises(GolfError, match="'toybits' does not implement generate"):
        run_cli(["generate", str(artifact), "--prompt", "The"])
    assert not list(tmp_path.glob("*.onnx"))


def test_golf_generate_runs_artifacts_and_onnx_alike(exported, int4_run, capsys):
    _, out = exported
    results = {}
    for target in (int4_run, out):
        for seed in (3, 3, 4):
            assert run_cli(["generate", str(target), "--prompt", "The city", "--tokens", "12", "--temperature", "3",
                            "--top-k", "0", "--seed", str(seed), "--json"]) == 0
            results.setdefault(str(target), []).append(json.loads(capsys.readouterr().out))
    by_artifact, by_onnx = results[str(int4_run)], results[str(out)]
    assert by_artifact[0]["ids"] == by_artifact[1]["ids"] == by_onnx[0]["ids"]  # same seed, same tokens
    assert by_artifact[0]["ids"] != by_artifact[2]["ids"]  # another seed, another sample
    assert by_onnx[0]["kind"] == "onnx" and by_artifact[0]["kind"] == "ar"
    assert all(r["new_tokens"] == 12 and r["tokens_per_s"] > 0 for r in by_artifact + by_onnx)
    assert run_cli(["generate", str(out), "--temperature", "0", "--tokens", "8"]) == 0
    assert "tokens/s" in capsys.readouterr().out



def test_a_model_with_frontier_options_is_refused_not_exported_wrong(tmp_path):
    artifact = random_artifact(tmp_path / "xsa.golf", "int8", xsa=True, recur_start=1, recur_end=2, recur_loops=2)
    with pytest.raises(GolfError, match="baseline AR; this model uses options it does not implement "
                                        r"\(recur_end=2, recur_loops=2, recur_start=1, xsa=True\)"):
        export_onnx(artifact, tmp_path / "xsa.onnx")
    assert not (tmp_path / "xsa.onnx").exists()
