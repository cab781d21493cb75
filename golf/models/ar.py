"""The autoregressive baseline: the official parameter-golf GPT.

9 blocks × 512 wide, 8 query / 4 KV heads, relu² MLP ×2, U-Net skips, a tied embedding that is
also the LM head, and logits soft-capped at 30. At the defaults it has exactly 17,059,912
parameters, like the official `model_params` log line. Its score is the chain rule over a
normalised softmax, so its bpb is labelled `exact`.

The frontier options (all off by default; `PRESET=frontier` turns on what the top records use) are
fields of the same config: LeakyReLU² (MLP_LEAKY_SLOPE), XSA, partial RoPE (ROPE_DIMS), layer-norm
scaling (LN_SCALE), parallel residuals (PARALLEL_FROM), an attention-output gate (ATTN_GATE),
SmearGate (SMEAR_GATE, masked at BOS_ID) and depth recurrence (RECUR_START..RECUR_END looped
RECUR_LOOPS times; no extra parameters). None changes what the score means: it stays exact.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from golf.models import register
from golf.models.base import LanguageModel, ScoreOutput
from golf.models.config import FP32_MAX, TransformerConfig
from golf.models.layers import (Block, BlockOptions, CastedLinear, KVCache, SmearGate, TiedEmbedding, num_unet_skips,
                                recurrence_order, rms_norm, unet_forward, unet_roles)
from golf.models.sampling import sample_next


BASELINE_FIELDS = {f.name for f in dataclasses.fields(TransformerConfig)} | {"bos_id"}


MAX_DEPTH = 4096  # layers run per forward pass: far past any model trained in 10 minutes


@dataclasses.dataclass
class ARConfig(TransformerConfig):
    """The baseline's transformer fields (`TransformerConfig`: the official environment variables,
    lower-cased, VOCAB_SIZE → vocab_size, with the official defaults), then the frontier options."""

    # Frontier options (defaults: the baseline).
    mlp_leaky_slope: float = 0.0
    xsa: bool = False
    rope_dims: int = 0  # 0 = rotary on the whole head dim
    ln_scale: bool = False
    parallel_from: int = -1  # first layer with parallel residuals; -1 = none
    attn_gate: bool = False
    smear_gate: bool = False
    bos_id: int = 1  # the sp1024/sp8192 tokenizers' BOS, which starts every document
    recur_start: int = 0
    recur_end: int = 0  # layers [recur_start, recur_end) run recur_loops times
    recur_loops: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        head_dim = self.model_dim // self.num_heads
        if self.rope_dims % 2 or not 0 <= self.rope_dims <= head_dim:
            raise ValueError(f"rope_dims {self.rope_dims} must be even and at most the head dim {head_dim}")
        if not 0 <= self.mlp_leaky_slope <= FP32_MAX:  # also refuses NaN
            raise ValueError(f"mlp_leaky_slope must be a finite number >= 0, got {self.mlp_leaky_slope}")
        if self.recur_loops < 1 or not 0 <= self.recur_start <= self.recur_end <= self.num_layers:
            raise ValueError(f"recurrence needs 0 <= RECUR_START <= RECUR_END <= NUM_LAYERS and RECUR_LOOPS >= 1, "
                             f"got {self.recur_start}, {self.recur_end}, {self.num_layers}, {self.recur_loops}")
        # Recurrence adds depth without parameters, so the tensors present cannot bound the compute.
        depth = self.num_layers + (self.recur_end - self.recur_start) * (self.recur_loops - 1)
        if depth > MAX_DEPTH:
            raise ValueError(f"{depth} layers run per forward pass (with recurrence); at most {MAX_DEPTH}")

    def frontier_options(self) -> dict[str, object]:
        """The frontier options this config turns on (field: value), {} for the baseline."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name not in BASELINE_FIELDS and getattr(self, f.name) != f.default}

    def block_options(self, layer: int) -> BlockOptions:
        return BlockOptions(leaky_slope=self.mlp_leaky_slope, xsa=self.xsa, rope_dims=self.rope_dims,
                            norm_scale=1.0 / math.sqrt(layer + 1) if self.ln_scale else 1.0,
                            parallel=0 <= self.parallel_from <= layer, attn_gate=self.attn_gate)


@register("ar", ARConfig)
class GPT(LanguageModel):
    def __init__(self, config: ARConfig) -> None:
        super().__init__(config)
        c = config
        self.tok_emb = TiedEmbedding(c.vocab_size, c.model_dim)
        self.blocks = nn.ModuleList(
            Block(c.model_dim, c.num_heads, c.num_kv_heads, c.mlp_mult, c.rope_base, c.qk_gain_init,
                  options=c.block_options(i))
            for i in range(c.num_layers))
        self.smear = SmearGate(c.model_dim, c.bos_id) if c.smear_gate else None
        # Depth recurrence runs from the start unless the trainer switches it on later (RECUR_START_FRAC).
        self.recurrence_on = True
        self.skip_weights = nn.Parameter(torch.ones(num_unet_skips(c.num_layers), c.model_dim))
        self.lm_head = None if c.tie_embeddings else CastedLinear(c.model_dim, c.vocab_size, zero_init=True)
        if c.tie_embeddings:
            # A small init keeps early tied logits near zero, so the first steps are not noise.
            nn.init.normal_(self.tok_emb.weight, mean=0.0, std=c.tied_embed_init_std)

    @classmethod
    def tiny_config(cls) -> ARConfig:
        # 3 layers: an odd count, so the U-Net has an unpaired middle block; GQA with 2 KV heads.
        return ARConfig(vocab_size=64, num_layers=3, model_dim=32, num_heads=4, num_kv_heads=2)

    def tensor_roles(self) -> dict[str, str]:
        roles = {"tok_emb.weight": "emb", **unet_roles(self.blocks)}
        if self.smear is not None:
            roles["smear.gate"] = "control"
        if self.lm_head is not None:
            roles["lm_head.weight"] = "head"
        return roles

    def block_order(self) -> list[int]:
        c = self.config
        loops = c.recur_loops if self.recurrence_on else 1
        return recurrence_order(c.num_layers, c.recur_start, c.recur_end, loops)

    def logits(self, input_ids: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Soft-capped logits [B, T, V] for inputs [B, T]."""
        return self.project(self.hidden(input_ids, cache))

    def hidden(self, input_ids: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """The final normed states [B, T, D] the head reads (split from `project` so document LoRA TTT,
        golf.doc_ttt, can add a per-document low-rank term to the head, tied or not)."""
        x = self.tok_emb(input_ids)
        if self.smear is not None:
            smeared = self.smear(x, input_ids, cache.previous_embedding if cache is not None else None)
            if cache is not None:
                cache.previous_embedding = x[:, -1:]
            x = smeared
        return rms_norm(unet_forward(self.blocks, self.skip_weights, rms_norm(x), cache, self.block_order()))

    def project(self, x: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        """Soft-capped logits [B, T, V] of final states [B, T, D]; `extra` [B, T, V] is added before the cap."""
        if self.lm_head is None:
            raw = F.linear(x, self.tok_emb.table().to(x.dtype))
        else:
            raw = self.lm_head(x)
        if extra is not None:
            raw = raw + extra
        cap = self.config.logit_softcap
        return cap * torch.tanh(raw / cap)

    def loss(self, tokens: torch.Tensor) -> torch.Tensor:
        logits = self.logits(tokens[:, :-1])
        return F.cross_entropy(logits.float().flatten(0, 1), tokens[:, 1:].flatten())

    def score(self, tokens: torch.Tensor, *, generator: torch.Generator | None = None,
              samples: int = 1) -> ScoreOutput:
        logits = self.logits(tokens[:, :-1])
        nats = F.cross_entropy(logits.float().flatten(0, 1), tokens[:, 1:].flatten(), reduction="none")
        return ScoreOutput(nats=nats.view(tokens.size(0), -1), label="exact")

    @torch.no_grad()
    def generate(self, prompt: torch.Tensor, n: int, *, temperature: float = 1.0,
                 top_k: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Sample with a KV cache: the prompt is run once, then one token per step.

        temperature 0 means greedy decoding.
        """
        cache = KVCache()
        out = prompt
        step_input = prompt
        for _ in range(n):
            last = self.logits(step_input, cache)[:, -1].float()
            cache.length += step_input.size(1)
            nxt = sample_next(last, temperature, top_k, generator)
            out = torch.cat((out, nxt), dim=1)
            step_input = nxt
        return out
