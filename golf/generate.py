"""Sampling text from a golf model: an artifact of any family, or an exported ONNX graph.

An artifact is rebuilt as `golf score` rebuilds it and sampled through its family's `generate`
(the AR model runs its prompt once and then one token per step on a KV cache). A `.onnx` file is
the scoring graph `golf export` wrote (or its `.kv.onnx` decode graph) and runs in onnxruntime on
the decode graph's KV cache. Both draw with `golf.models.sampling.sample_next` from a generator
seeded by `seed`, so the same seed gives the same text (on the same build, up to float ties).

The prompt is a new document: BOS, then the tokenizer's pieces, as the val shards hold them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from golf import embedded
from golf.bpb import load_tokenizer
from golf.embedded import file_sha256
from golf.errors import GolfError
from golf.inspect import resolve_artifact
from golf.score import check_tokenizer_matches, model_from_artifact, resolve_device
from quant import read_artifact


def _onnx_model(path: Path):
    from export import require_onnx

    require_onnx()
    from export.onnx_export import decode_path
    from export.runtime import OnnxAR

    if path.name.endswith(".kv.onnx"):
        return OnnxAR(path)
    decode = decode_path(path)
    if not decode.is_file():
        raise GolfError(f"{decode} (the KV-cache decode graph golf export writes beside {path.name}) is missing")
    return OnnxAR(decode)


def load_generator_model(path: Path, device: torch.device) -> tuple[Any, dict[str, Any], str]:
    """(model, tokenizer record {sha256}, kind) for an artifact, a run folder or a .onnx file."""
    if path.suffix == ".onnx":
        if not path.is_file():
            raise GolfError(f"ONNX model not found: {path}")
        model = _onnx_model(path)
        return model, {"sha256": model.metadata.get("golf.tokenizer_sha256")}, "onnx"
    stored = read_artifact(resolve_artifact(path))  # a missing or damaged file is one QuantError line
    model = model_from_artifact(stored.meta, stored.state_dict).to(device).eval()
    return model, stored.meta.get("tokenizer", {}), model.variant


def encode_prompt(sp, prompt: str) -> list[int]:
    return [sp.bos_id()] + sp.encode(prompt)


def continuation(sp, prompt_ids: list[int], new_ids: list[int]) -> str:
    """The text `new_ids` add after the prompt. Decoded together with the prompt: decoded alone, a
    leading "▁" (the space before the first new word) would be dropped."""
    before = sp.decode(prompt_ids)
    after = sp.decode(prompt_ids + new_ids)
    return after[len(before):] if after.startswith(before) else sp.decode(new_ids)


def generate_text(path: Path, prompt: str, *, tokens: int = 64, temperature: float = 0.8,
                  top_k: int | None = 50, seed: int = 0, tokenizer: Path | None = None,
                  device: str = "cpu") -> dict[str, Any]:
    """Continue `prompt` by `tokens` tokens; the text, ids and tokens/s (prompt included in the time)."""
    if tokens < 1:
        raise GolfError(f"--tokens must be >= 1, got {tokens}")
    if temperature < 0:
        raise GolfError(f"--temperature must be >= 0 (0 = greedy), got {temperature}")
    if top_k is not None and top_k < 1:
        raise GolfError(f"--top-k must be >= 1, got {top_k}")
    dev = resolve_device(device)
    model, tok_record, kind = load_generator_model(Path(path), dev)
    tok_path = tokenizer or embedded.tokenizer_path()
    check_tokenizer_matches({"tokenizer": tok_record}, tok_path, file_sha256(tok_path))
    sp = load_tokenizer(tok_path)
    if sp.vocab_size() > model.vocab_size:
        raise GolfError(f"the tokenizer has {sp.vocab_size()} pieces but the model knows only {model.vocab_size} ids")
    ids = torch.tensor([encode_prompt(sp, prompt)], dtype=torch.long, device=dev if kind != "onnx" else "cpu")
    generator = torch.Generator(device=ids.device).manual_seed(seed)
    start = time.perf_counter()
    try:
        with torch.inference_mode():
            out = model.generate(ids, tokens, temperature=temperature, top_k=top_k, generator=generator)
    except NotImplementedError:
        raise GolfError(f"model family {kind!r} does not implement generate") from None
    seconds = time.perf_counter() - start
    new = out[0, ids.size(1):].tolist()
    # Ids past the tokenizer's vocabulary are a family's reserved ones (a mask id): never text.
    text_ids = [i for i in new if i < sp.vocab_size()]
    return {"command": "generate", "model": str(path), "kind": kind, "prompt": prompt,
            "completion": continuation(sp, ids[0].tolist(), text_ids), "prompt_tokens": ids.size(1), "new_tokens": len(new),
            "ids": new, "temperature": temperature, "top_k": top_k, "seed": seed, "seconds": seconds,
            "tokens_per_s": len(new) / max(seconds, 1e-9), "device": "cpu" if kind == "onnx" else dev.type}
