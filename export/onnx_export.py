"""`golf export ARTIFACT --onnx OUT`: an AR artifact as two ONNX files that store its weights once.

OUT is the scoring graph (input_ids → logits), self-contained. Beside it, OUT's stem + `.kv.onnx`
is the KV-cache decode graph; its large initializers are *external data pointing into OUT*: each
tensor's raw bytes already sit contiguously inside OUT's protobuf, so the decode graph names OUT
and the offset instead of repeating them. Both files together hold one copy of every weight. Keep
the two files side by side, and never ship onnxruntime's optimized model (constant folding makes
copies).

Both are written to a temporary folder beside OUT, checked against the dequantized torch model
(export.parity) and only then moved into place, so a failed export leaves nothing behind.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import onnx
from onnx import TensorProto

import golf
from export.ar_graph import ARGraph, Shape
from export.onnx_graph import Graph
from export.weights import Weights, table_nbytes
from golf.errors import GolfError
from golf.inspect import resolve_artifact
from golf.models import make_config
from quant import QuantizedArtifact, read_quantized

# Initializers at least this large are shared with the scoring file; smaller ones stay inline
# (a handful of bytes each, not worth an external reference).
SHARE_MIN_BYTES = 256


def decode_path(out: Path) -> Path:
    """Where the KV-cache decode graph goes for scoring graph `out` (model.onnx → model.kv.onnx)."""
    return out.with_name(f"{out.stem}.kv{out.suffix or '.onnx'}")


def ar_shape(art: QuantizedArtifact) -> Shape:
    spec = art.meta.get("model") if isinstance(art.meta, dict) else None
    variant = spec.get("variant") if isinstance(spec, dict) else None
    if variant != "ar":
        raise GolfError(f"export: only the 'ar' family has an ONNX graph; this artifact is {variant!r} "
                        "(golf generate still samples it through its own generate)")
    try:
        options = make_config("ar", spec["config"]).frontier_options()
        shape = Shape.of(spec["config"])
    except (KeyError, TypeError, ValueError, GolfError) as e:
        raise GolfError(f"export: the artifact's model config is unusable ({e})") from None
    if options:  # the graph is the baseline's: an XSA or recurrence model would export wrong logits
        raise GolfError("export: the ONNX graph is the baseline AR; this model uses options it does not "
                        f"implement ({', '.join(f'{k}={v}' for k, v in sorted(options.items()))})")
    return shape


def build_model(art: QuantizedArtifact, *, kv_cache: bool, contrib: bool,
                metadata: dict[str, str]) -> tuple[onnx.ModelProto, Weights]:
    shape = ar_shape(art)
    graph = Graph("golf_ar_decode" if kv_cache else "golf_ar")
    weights = Weights(graph, art.tensors, contrib=contrib)
    ARGraph(graph, weights, shape, kv_cache=kv_cache).build()
    return graph.model({**metadata, "golf.graph": "decode" if kv_cache else "score"}), weights


def share_initializers(model: onnx.ModelProto, host: bytes, host_name: str) -> int:
    """Point every large initializer of `model` at the identical bytes inside `host` (the scoring
    file's serialized protobuf). Returns the bytes so shared; a tensor not found stays inline."""
    shared = 0
    for tensor in model.graph.initializer:
        raw = tensor.raw_data
        if len(raw) < SHARE_MIN_BYTES:
            continue
        offset = host.find(raw)
        if offset < 0:
            continue
        tensor.ClearField("raw_data")
        tensor.data_location = TensorProto.EXTERNAL
        for key, value in (("location", host_name), ("offset", str(offset)), ("length", str(len(raw)))):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
        shared += len(raw)
    return shared


def metadata_of(art: QuantizedArtifact, artifact: Path, contrib: bool) -> dict[str, str]:
    """What `golf generate MODEL.onnx` needs: the model, its tokenizer, where it came from."""
    return {"golf.variant": "ar", "golf.config": json.dumps(art.meta["model"]["config"], sort_keys=True),
            "golf.tokenizer_sha256": str(art.meta.get("tokenizer", {}).get("sha256", "")),
            "golf.eval_seq_len": str(art.meta.get("eval", {}).get("seq_len", "")),
            "golf.rule": art.rule, "golf.artifact": artifact.name, "golf.contrib_ops": str(int(contrib)),
            "golf.version": golf.__version__}


def export_onnx(artifact: Path, out: Path, *, contrib: bool = True, check: bool = True) -> dict[str, Any]:
    """Write OUT (scoring graph) and its decode graph; see the module docstring. Returns a report."""
    artifact = resolve_artifact(Path(artifact))
    art = read_quantized(artifact)  # a missing or damaged file is one QuantError line
    out = Path(out)
    if out.is_dir():
        raise GolfError(f"--onnx {out} is a folder; give a file name such as {out / 'model.onnx'}")
    metadata = metadata_of(art, artifact, contrib)
    score_model, weights = build_model(art, kv_cache=False, contrib=contrib, metadata=metadata)
    decode_model, _ = build_model(art, kv_cache=True, contrib=contrib, metadata=metadata)
    score_bytes = score_model.SerializeToString()
    shared = share_initializers(decode_model, score_bytes, out.name)
    decode_bytes = decode_model.SerializeToString()

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (staging / out.name).write_bytes(score_bytes)
        (staging / decode_path(out).name).write_bytes(decode_bytes)
        parity = None
        if check:
            from export.parity import check_parity
            parity = check_parity(artifact, staging / out.name, staging / decode_path(out).name)
            if not parity["ok"]:
                raise GolfError(f"export: onnxruntime disagrees with the torch model: {parity['problem']}")
        for name in (out.name, decode_path(out).name):
            (staging / name).replace(out.parent / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    emb = art.tensors.get("tok_emb.weight")
    table = table_nbytes(emb) if emb is not None and emb.scheme.startswith("int4g") else None
    stored = sum(weights.stored_bytes.values())
    return {"command": "export", "artifact": str(artifact), "onnx": str(out), "decode_onnx": str(decode_path(out)),
            "contrib_ops": contrib, "rule": art.rule, "bytes_onnx": len(score_bytes),
            "bytes_decode_onnx": len(decode_bytes), "bytes_shared_with_onnx": shared,
            "bytes_weights": stored, "bytes_tied_table": table, "bytes_graph": len(score_bytes) - stored,
            "bytes_artifact": art.nbytes, "tensors": {n: weights.stored_bytes[n] for n in sorted(weights.stored_bytes)},
            "parity": parity}
