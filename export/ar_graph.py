"""The AR baseline (`golf.models.ar.GPT`) written out as an ONNX graph, op for op.

Two graphs come from the same code: the scoring graph (input_ids [B, T] → logits [B, T, V]) and
the KV-cache decode graph, which also takes each layer's past keys and values [B, KVH, P, hd]
(P may be 0: that is a prefill) and returns them extended by the T new positions. Positions start
at P, and the mask lets query i see keys 0..P+i, so a prefill, a one-token step and a chunk after a
cache all use one graph. Everything is computed in fp32 with standard ops; only the weight reads
(export.weights) may use contrib ops.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from export.onnx_graph import FLOAT, INT64, Graph
from export.weights import Weights

# F.rms_norm with eps=None uses the dtype's machine epsilon; the graph is fp32 throughout.
RMS_EPS = float(torch.finfo(torch.float32).eps)


@dataclass(frozen=True)
class Shape:
    layers: int
    dim: int
    heads: int
    kv_heads: int
    vocab: int
    softcap: float
    rope_base: float
    tied: bool

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads

    @classmethod
    def of(cls, config: dict[str, Any]) -> Shape:
        return cls(int(config["num_layers"]), int(config["model_dim"]), int(config["num_heads"]),
                   int(config["num_kv_heads"]), int(config["vocab_size"]), float(config["logit_softcap"]),
                   float(config["rope_base"]), bool(config["tie_embeddings"]))


def kv_names(layer: int) -> tuple[str, str, str, str]:
    """(past key, past value, present key, present value) input/output names of one layer."""
    return (f"past_key.{layer}", f"past_value.{layer}", f"present_key.{layer}", f"present_value.{layer}")


class ARGraph:
    def __init__(self, g: Graph, w: Weights, shape: Shape, *, kv_cache: bool) -> None:
        self.g, self.w, self.s, self.kv_cache = g, w, shape, kv_cache

    # ------------------------------------------------------------------ small pieces

    def rms_norm(self, x: str) -> str:
        g = self.g
        mean_sq = g.op("ReduceMean", [g.op("Mul", [x, x]), g.const_i64([-1])], keepdims=1)
        inv = g.op("Reciprocal", [g.op("Sqrt", [g.op("Add", [mean_sq, g.const_f32(RMS_EPS)])])])
        return g.op("Mul", [x, inv])

    def scalar_dim(self, value: str, axis: int) -> str:
        g = self.g
        return g.op("Squeeze", [g.op("Shape", [value], start=axis, end=axis + 1), g.const_i64([0])])

    def rotary_tables(self, start: str, length: str) -> tuple[str, str]:
        """cos, sin [T, hd/2] for positions start..start+T-1 (inv_freq as the model computes it)."""
        g, hd = self.g, self.s.head_dim
        inv_freq = (1.0 / (self.s.rope_base ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))).numpy()
        pos = g.op("Cast", [g.op("Range", [start, g.op("Add", [start, length]), g.const_i64(1)])], to=FLOAT)
        freqs = g.op("Mul", [g.op("Unsqueeze", [pos, g.const_i64([1])]), g.array("inv_freq", inv_freq)])
        return g.op("Cos", [freqs]), g.op("Sin", [freqs])

    def rotate(self, x: str, cos: str, sin: str) -> str:
        g = self.g
        x1, x2 = g.op("Split", [x], axis=-1, num_outputs=2, outputs=2)
        first = g.op("Add", [g.op("Mul", [x1, cos]), g.op("Mul", [x2, sin])])
        second = g.op("Sub", [g.op("Mul", [x2, cos]), g.op("Mul", [x1, sin])])
        return g.op("Concat", [first, second], axis=-1)

    def heads(self, x: str, count: int) -> str:
        """[B, T, count·hd] → [B, count, T, hd]."""
        g = self.g
        split = g.op("Reshape", [x, g.const_i64([0, 0, count, self.s.head_dim])])
        return g.op("Transpose", [split], perm=[0, 2, 1, 3])

    def repeat_kv(self, x: str) -> str:
        """[B, KVH, S, hd] → [B, H, S, hd]: query head h reads KV head h // (H / KVH)."""
        s, g = self.s, self.g
        if s.kv_heads == s.heads:
            return x
        rep = s.heads // s.kv_heads
        wide = g.op("Unsqueeze", [x, g.const_i64([2])])  # [B, KVH, 1, S, hd]
        target = g.op("Concat", [g.op("Shape", [x], end=2), g.const_i64([rep]),
                                 g.op("Shape", [x], start=2)], axis=0)
        return g.op("Reshape", [g.op("Expand", [wide, target]), g.const_i64([0, s.heads, -1, s.head_dim])])

    # ------------------------------------------------------------------ the model

    def attention(self, x: str, layer: int, ctx: dict[str, str]) -> str:
        g, w, s = self.g, self.w, self.s
        p = f"blocks.{layer}.attn."
        kv_dim = s.kv_heads * s.head_dim
        q = self.rms_norm(self.heads(w.linear(x, p + "c_q.weight", s.dim), s.heads))
        k = self.rms_norm(self.heads(w.linear(x, p + "c_k.weight", kv_dim), s.kv_heads))
        v = self.heads(w.linear(x, p + "c_v.weight", kv_dim), s.kv_heads)
        q, k = self.rotate(q, ctx["cos"], ctx["sin"]), self.rotate(k, ctx["cos"], ctx["sin"])
        gain = g.op("Reshape", [w.value(p + "q_gain"), g.const_i64([1, s.heads, 1, 1])])
        q = g.op("Mul", [q, gain])
        if self.kv_cache:
            past_k, past_v, present_k, present_v = kv_names(layer)
            k = g.op("Concat", [past_k, k], axis=2)
            v = g.op("Concat", [past_v, v], axis=2)
            cache_shape = ["batch", s.kv_heads, "total", s.head_dim]
            g.add_output(k, present_k, FLOAT, cache_shape)
            g.add_output(v, present_v, FLOAT, cache_shape)
        scores = g.op("MatMul", [q, g.op("Transpose", [self.repeat_kv(k)], perm=[0, 1, 3, 2])])
        scores = g.op("Mul", [scores, g.const_f32(1.0 / math.sqrt(s.head_dim))])
        scores = g.op("Where", [ctx["mask"], scores, g.const_f32(-math.inf)])
        y = g.op("MatMul", [g.op("Softmax", [scores], axis=-1), self.repeat_kv(v)])  # [B, H, T, hd]
        merged = g.op("Reshape", [g.op("Transpose", [y], perm=[0, 2, 1, 3]), g.const_i64([0, 0, s.dim])])
        return w.linear(merged, p + "proj.weight", s.dim)

    def block(self, x: str, x0: str, layer: int, ctx: dict[str, str]) -> str:
        g, w, s = self.g, self.w, self.s
        p = f"blocks.{layer}."
        mix = w.value(p + "resid_mix")
        x = g.op("Add", [g.op("Mul", [g.op("Gather", [mix, g.const_i64(0)], axis=0), x]),
                         g.op("Mul", [g.op("Gather", [mix, g.const_i64(1)], axis=0), x0])])
        attn = self.attention(self.rms_norm(x), layer, ctx)
        x = g.op("Add", [x, g.op("Mul", [w.value(p + "attn_scale"), attn])])
        hidden = w.linear(self.rms_norm(x), p + "mlp.fc.weight", self._mlp_width(p))
        relu = g.op("Relu", [hidden])
        mlp = w.linear(g.op("Mul", [relu, relu]), p + "mlp.proj.weight", s.dim)
        return g.op("Add", [x, g.op("Mul", [w.value(p + "mlp_scale"), mlp])])

    def _mlp_width(self, prefix: str) -> int:
        return int(self.w.tensors[prefix + "mlp.fc.weight"].shape[0])

    def context(self, ids: str) -> dict[str, str]:
        """Positions, rotary tables and the attention mask shared by every layer."""
        g = self.g
        length = self.scalar_dim(ids, 1)
        start = self.scalar_dim(kv_names(0)[0], 2) if self.kv_cache else g.const_i64(0)
        cos, sin = self.rotary_tables(start, length)
        end = g.op("Add", [start, length])
        q_pos = g.op("Unsqueeze", [g.op("Range", [start, end, g.const_i64(1)]), g.const_i64([1])])  # [T, 1]
        k_pos = g.op("Unsqueeze", [g.op("Range", [g.const_i64(0), end, g.const_i64(1)]), g.const_i64([0])])
        return {"cos": cos, "sin": sin, "mask": g.op("LessOrEqual", [k_pos, q_pos])}  # [T, P+T]

    def build(self) -> None:
        g, w, s = self.g, self.w, self.s
        ids = g.add_input("input_ids", INT64, ["batch", "seq"])
        if self.kv_cache:
            for layer in range(s.layers):
                past_k, past_v, _, _ = kv_names(layer)
                g.add_input(past_k, FLOAT, ["batch", s.kv_heads, "past", s.head_dim])
                g.add_input(past_v, FLOAT, ["batch", s.kv_heads, "past", s.head_dim])
        w.lead = g.op("Shape", [ids])
        ctx = self.context(ids)
        x = x0 = self.rms_norm(w.lookup(ids, "tok_emb.weight"))
        encoder = s.layers // 2
        skips: list[str] = []
        for layer in range(encoder):
            x = self.block(x, x0, layer, ctx)
            skips.append(x)
        skip_weights = w.value("skip_weights") if skips else ""
        for i in range(s.layers - encoder):
            if skips:
                weight = g.op("Gather", [skip_weights, g.const_i64(i)], axis=0)
                x = g.op("Add", [x, g.op("Mul", [weight, skips.pop()])])
            x = self.block(x, x0, encoder + i, ctx)
        x = self.rms_norm(x)
        head = "tok_emb.weight" if s.tied else "lm_head.weight"
        raw = w.linear(x, head, s.vocab)
        cap = g.const_f32(s.softcap)
        logits = g.op("Mul", [cap, g.op("Tanh", [g.op("Div", [raw, cap])])])
        g.add_output(logits, "logits", FLOAT, ["batch", "seq", s.vocab])


def empty_cache(shape: Shape, batch: int = 1) -> dict[str, np.ndarray]:
    """Decode-graph inputs for an empty cache (a prefill)."""
    feeds = {}
    for layer in range(shape.layers):
        past_k, past_v, _, _ = kv_names(layer)
        feeds[past_k] = feeds[past_v] = np.zeros((batch, shape.kv_heads, 0, shape.head_dim), np.float32)
    return feeds
