"""Does onnxruntime compute what torch computes? Logits of the exported graphs against the
dequantized torch model on real val text, and greedy generation token for token.

The torch side is the model `golf score` builds from the artifact (every tensor dequantized to
fp32); the ONNX side reads the same codes and scales. Both compute in fp32, so they differ only
by float reordering (matmul blocking, the order of a softmax's sum): measured ~1e-5 on logits
soft-capped at 30. LOGIT_TOLERANCE leaves room for other CPUs and onnxruntime versions while
staying far below what a wrong weight, scale or layout costs (logits off by whole units).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from export.ar_graph import empty_cache
from export.runtime import OnnxAR
from golf import embedded
from golf.data import load_val_tokens
from golf.score import model_from_artifact
from quant import read_artifact

LOGIT_TOLERANCE = 1e-3  # max |logit difference|, absolute


def parity_tokens(batch: int, length: int) -> torch.Tensor:
    """`batch` windows of `length` real val tokens (the embedded FineWeb sample), int64."""
    files = [embedded.shards_dir() / "fineweb_val_000000.bin"]
    tokens = load_val_tokens(files, length, max_tokens=batch * length + 1)
    return tokens[: batch * length].view(batch, length)


def check_parity(artifact: Path, onnx_path: Path, decode_path: Path, *, batch: int = 2, length: int = 48,
                 prefill: int = 16, generate: int = 24) -> dict[str, Any]:
    """Max |logit| differences of the scoring graph, a decode prefill and one-token decode steps,
    and whether greedy generation picks the same tokens; `ok` when all hold."""
    stored = read_artifact(artifact)
    model = model_from_artifact(stored.meta, stored.state_dict).eval()
    onnx_model = OnnxAR(decode_path, onnx_path)
    ids = parity_tokens(batch, length)
    if int(ids.max()) >= onnx_model.vocab_size:
        ids = ids % onnx_model.vocab_size  # a model with a smaller vocabulary than the sample's tokenizer
    with torch.inference_mode():
        reference = model.logits(ids).float().numpy()
    score_diff = float(np.abs(onnx_model.logits(ids.numpy()) - reference).max())

    logits, cache = onnx_model.step(ids[:, :prefill].numpy(), empty_cache(onnx_model.shape, batch))
    prefill_diff = float(np.abs(logits - reference[:, :prefill]).max())
    step_diff = 0.0
    for t in range(prefill, length):
        logits, cache = onnx_model.step(ids[:, t:t + 1].numpy(), cache)
        step_diff = max(step_diff, float(np.abs(logits[:, 0] - reference[:, t]).max()))

    prompt = ids[:1, :prefill]
    torch_tokens = model.generate(prompt, generate, temperature=0)[0, prefill:].tolist()
    onnx_tokens = onnx_model.generate(prompt, generate, temperature=0)[0, prefill:].tolist()
    diffs = {"score": score_diff, "decode_prefill": prefill_diff, "decode_step": step_diff}
    worst = max(diffs, key=diffs.get)
    problem = None
    if diffs[worst] > LOGIT_TOLERANCE:
        problem = f"{worst} logits differ by {diffs[worst]:.3g} (tolerance {LOGIT_TOLERANCE})"
    elif torch_tokens != onnx_tokens:
        problem = f"greedy generation differs: torch {torch_tokens} vs onnx {onnx_tokens}"
    return {"ok": problem is None, "problem": problem, "tolerance": LOGIT_TOLERANCE,
            "max_abs_logit_diff": diffs, "tokens_compared": batch * length,
            "greedy_tokens": len(torch_tokens), "greedy_equal": torch_tokens == onnx_tokens}
