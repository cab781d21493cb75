"""Running the exported graphs with onnxruntime: sessions, logits, and KV-cache generation.

Sessions set `session.disable_quant_qdq`: onnxruntime otherwise keeps every DequantizeLinear of a
weight in the graph and dequantizes it again on every run (and once per consumer); with it the
weights are folded to fp32 once, at load time. The file on disk is unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path
import numpy as np
import onnxruntime as ort
import torch

from export.ar_graph import Shape, empty_cache, kv_names
from golf.errors import GolfError
from golf.models.sampling import sample_next


def session(path: Path, *, threads: int | None = None) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.add_session_config_entry("session.disable_quant_qdq", "1")
    opts.log_severity_level = 3  # warnings about unused initializers are noise here
    if threads:
        opts.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types, one line is enough
        raise GolfError(f"onnxruntime cannot load {path}: {str(e).splitlines()[0]}") from None


class OnnxAR:
    """An exported AR model: the decode graph (KV cache) and, when present, the scoring graph."""

    def __init__(self, decode: Path, score: Path | None = None, *, threads: int | None = None) -> None:
        self.decode = session(decode, threads=threads)
        meta = self.decode.get_modelmeta().custom_metadata_map
        if meta.get("golf.graph") != "decode":
            raise GolfError(f"{decode} is not a golf decode graph (golf export writes MODEL.kv.onnx)")
        self.metadata = meta
        self.config = json.loads(meta["golf.config"])
        self.shape = Shape.of(self.config)
        self.score = session(score, threads=threads) if score is not None else None

    @property
    def vocab_size(self) -> int:
        return self.shape.vocab

    def logits(self, ids: np.ndarray) -> np.ndarray:
        """Logits [B, T, V] of int64 ids [B, T], from the scoring graph (or a decode prefill)."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if self.score is not None:
            return self.score.run(["logits"], {"input_ids": ids})[0]
        return self.step(ids, empty_cache(self.shape, ids.shape[0]))[0]

    def step(self, ids: np.ndarray, cache: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Run `ids` after `cache`: (logits [B, T, V], the extended cache as the next step's feeds)."""
        outputs = self.decode.run(None, {"input_ids": np.ascontiguousarray(ids, dtype=np.int64), **cache})
        names = [o.name for o in self.decode.get_outputs()]
        by_name = dict(zip(names, outputs))
        nxt = {}
        for layer in range(self.shape.layers):
            past_k, past_v, present_k, present_v = kv_names(layer)
            nxt[past_k], nxt[past_v] = by_name[present_k], by_name[present_v]
        return by_name["logits"], nxt

    def generate(self, prompt: torch.Tensor, n: int, *, temperature: float = 1.0, top_k: int | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Same contract (and the same sampling code) as `LanguageModel.generate`."""
        cache = empty_cache(self.shape, prompt.size(0))
        out, step_input = prompt, prompt
        for _ in range(n):
            logits, cache = self.step(step_input.numpy(), cache)
            nxt = sample_next(torch.from_numpy(logits[:, -1]).float(), temperature, top_k, generator)
            out = torch.cat((out, nxt), dim=1)
            step_input = nxt
        return out
