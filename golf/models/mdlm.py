"""Masked diffusion (MDLM): a bidirectional transformer that un-masks text, scored honestly.

The forward process hides each target position independently with probability t (linear schedule
α_t = 1 − t, so t = 1 hides everything) by replacing it with a mask id reserved one past the
tokenizer's vocabulary. The network sees the whole window (attention is not causal) and predicts
the hidden tokens. SUBS parameterisation: the mask is never a prediction (the head has no row for
it) and visible positions copy themselves, so only hidden positions carry loss. There is no time
input by default (the number of masks tells the model t; TIME_CONDITIONING=1 adds one).

A window holds T+1 tokens like AR's: position 0 is always visible (AR's first input) and the T
targets are tokens[:, 1:], so both families score the same tokens against the same bytes.

Loss and score are the continuous-time NELBO, E_t[(1/t) Σ_hidden −log p(x_i | z_t)], an upper
bound on −log p(x_{1:T} | x_0) of the model's own generative process (Sahoo et al. 2024):
- training: one stratified t per row of the batch, weight 1/t clamped at LOSS_WEIGHT_MAX
  (an unclamped 1/t makes gradients too noisy; the clamp is never applied when scoring);
- `score` (label `bound`): K = `samples` stratified draws t_k in (k/K, (k+1)/K] per window, no
  cut-off. Each draw hides exactly l = ceil(t·T) positions at random and weighs them T/l: with t
  uniform, l is uniform on 1..T, and this has the same expectation as hiding each position with
  probability t and weighing 1/t (∫ (1/t)·Binomial(l; T, t) dt = 1/l), but finite variance (the
  1/t draw's variance diverges as t → 0). All of its noise comes from the `generator` it is given.
  The standard error of each window's sum treats the K strata as independent draws, which
  over-states it in expectation (the spread between strata is counted as noise);
- `MDLM_SCORE=chain` (label `exact`, for smaller eval sets): the left-to-right chain rule
  Π_i p(x_i | x_{<i}, masks from i on), a normalised distribution built from the model's
  conditionals, so its −log2 is an exact code length (not a bound on the NELBO's model).
  MDLM_CHAIN_K=k reveals k positions per forward pass, each scored from the same pass (a product
  of normalised marginals: still exact, k× cheaper, usually looser). Cost: ceil(T/k) passes.
`ScoreOutput.passes` reports the forward passes per window either way.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from golf.errors import GolfError
from golf.models import register
from golf.models.base import LanguageModel, ScoreOutput
from golf.models.config import TransformerConfig
from golf.models.layers import (Block, CastedLinear, TiedEmbedding, num_unet_skips, rms_norm, unet_forward,
                                unet_roles)

SCORE_MODES = ("nelbo", "chain")
TIME_FEATURES = 16  # cosine features of t fed to the optional time input


@dataclasses.dataclass
class MDLMConfig(TransformerConfig):
    """The transformer's fields and defaults are AR's (equal shapes: equal parameters, plus the
    mask row; vocab_size is the tokenizer's, the mask id is vocab_size); the rest are the
    diffusion's, read from TIME_CONDITIONING, LOSS_WEIGHT_MAX, MDLM_SCORE, MDLM_CHAIN_K."""

    time_conditioning: bool = False
    loss_weight_max: float = 100.0  # training only: the 1/t weight is clamped here (PR #1699's 100)
    mdlm_score: str = "nelbo"  # what `score` computes: nelbo (bound) | chain (exact)
    mdlm_chain_k: int = 1  # chain: positions revealed (and scored) per forward pass

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mdlm_score not in SCORE_MODES:
            raise ValueError(f"mdlm_score must be one of {', '.join(SCORE_MODES)}, got {self.mdlm_score!r}")
        if self.mdlm_chain_k < 1:
            raise ValueError(f"mdlm_chain_k must be >= 1, got {self.mdlm_chain_k}")
        if self.loss_weight_max < 1:
            raise ValueError(f"loss_weight_max must be >= 1, got {self.loss_weight_max}")


def time_features(t: torch.Tensor) -> torch.Tensor:
    """[B] noise levels in [0, 1] → [B, TIME_FEATURES] cosines cos(π·j·t), a smooth basis on [0, 1]."""
    return torch.cos(math.pi * t[:, None] * torch.arange(TIME_FEATURES, device=t.device, dtype=t.dtype))


@register("mdlm", MDLMConfig)
class MDLM(LanguageModel):
    family_roles = {"time": "scalar"}  # the optional time input: a small table, Adam like the gains

    def __init__(self, config: MDLMConfig) -> None:
        super().__init__(config)
        c = config
        self.mask_id = c.vocab_size
        self.tok_emb = TiedEmbedding(c.vocab_size + 1, c.model_dim)  # the last row is the mask's input
        self.blocks = nn.ModuleList(
            Block(c.model_dim, c.num_heads, c.num_kv_heads, c.mlp_mult, c.rope_base, c.qk_gain_init, causal=False)
            for _ in range(c.num_layers))
        self.skip_weights = nn.Parameter(torch.ones(num_unet_skips(c.num_layers), c.model_dim))
        self.lm_head = None if c.tie_embeddings else CastedLinear(c.model_dim, c.vocab_size, zero_init=True)
        # Zero: a time-conditioned model starts as the unconditioned one.
        self.time_emb = nn.Parameter(torch.zeros(TIME_FEATURES, c.model_dim)) if c.time_conditioning else None
        if c.tie_embeddings:
            nn.init.normal_(self.tok_emb.weight, mean=0.0, std=c.tied_embed_init_std)

    @classmethod
    def tiny_config(cls) -> MDLMConfig:
        """A few-thousand-parameter config for tests (compile, quantization, toys)."""
        return MDLMConfig(vocab_size=64, num_layers=2, model_dim=32, num_heads=2, num_kv_heads=1)

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size + 1

    def tensor_roles(self) -> dict[str, str]:
        roles = {"tok_emb.weight": "emb", **unet_roles(self.blocks)}
        if self.lm_head is not None:
            roles["lm_head.weight"] = "head"
        if self.time_emb is not None:
            roles["time_emb"] = "time"
        return roles

    # ------------------------------------------------------------------ the network

    def logits(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Soft-capped logits [B, L, V] over the tokenizer's ids (never the mask) for a noisy
        sequence z [B, L]; t [B] is the noise level, read only with time conditioning."""
        x = self.tok_emb(z)
        if self.time_emb is not None:
            x = x + (time_features(t.to(self.time_emb.dtype)) @ self.time_emb).to(x.dtype)[:, None, :]
        x = rms_norm(unet_forward(self.blocks, self.skip_weights, rms_norm(x)))
        if self.lm_head is None:
            raw = F.linear(x, self.tok_emb.table()[: self.config.vocab_size].to(x.dtype))
        else:
            raw = self.lm_head(x)
        cap = self.config.logit_softcap
        return cap * torch.tanh(raw / cap)

    def hidden_nats(self, tokens: torch.Tensor, hidden: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """−log p(x_i | z) [B, T] at the hidden targets (0 at visible ones) of windows [B, T+1],
        hiding targets where `hidden` [B, T] is True; position 0 always stays visible."""
        targets = tokens[:, 1:]
        z = torch.cat((tokens[:, :1], torch.where(hidden, self.mask_id, targets)), dim=1)
        logits = self.logits(z, t)[:, 1:]
        nats = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="none")
        return nats.view_as(hidden) * hidden

    # ------------------------------------------------------------------ training and scoring

    def loss(self, tokens: torch.Tensor) -> torch.Tensor:
        """The NELBO per target token, one stratified t per row, 1/t clamped at LOSS_WEIGHT_MAX."""
        rows, targets = tokens.size(0), tokens.size(1) - 1
        t = (torch.arange(rows, device=tokens.device) + torch.rand(rows, device=tokens.device)) / rows
        hidden = torch.rand((rows, targets), device=tokens.device) < t[:, None]
        weight = 1.0 / t.clamp_min(1.0 / self.config.loss_weight_max)
        return (self.hidden_nats(tokens, hidden, t) * weight[:, None]).sum() / (rows * targets)

    def score(self, tokens: torch.Tensor, *, generator: torch.Generator | None = None,
              samples: int = 1) -> ScoreOutput:
        if self.config.mdlm_score == "chain":
            return self.chain_score(tokens)
        return self.nelbo_score(tokens, generator, samples)

    def nelbo_score(self, tokens: torch.Tensor, generator: torch.Generator | None, samples: int) -> ScoreOutput:
        """The NELBO per target, averaged over `samples` stratified draws (see the module docstring)."""
        if samples < 2:
            raise GolfError(f"the MDLM NELBO needs at least 2 Monte Carlo samples per window for its standard "
                            f"error, got {samples} (set EVAL_SAMPLES / golf score --samples)")
        rows, targets = tokens.size(0), tokens.size(1) - 1
        device = tokens.device
        u = torch.rand((samples, rows), generator=generator, device=device, dtype=torch.float64)
        t = (torch.arange(samples, device=device, dtype=torch.float64)[:, None] + 1 - u) / samples  # (k/K, (k+1)/K]
        count = torch.ceil(t * targets).clamp(1, targets)  # hidden positions per draw, uniform on 1..T
        rank = torch.rand((samples, rows, targets), generator=generator, device=device).argsort(-1).argsort(-1)
        draws = torch.stack([self.hidden_nats(tokens, rank[k] < count[k, :, None], t[k])
                             * (targets / count[k])[:, None].float() for k in range(samples)])  # [K, B, T]
        stderr = draws.double().sum(-1).std(dim=0) / math.sqrt(samples)
        return ScoreOutput(nats=draws.mean(dim=0), label="bound", stderr=stderr, passes=samples)

    def chain_score(self, tokens: torch.Tensor) -> ScoreOutput:
        """−log q(x) of the left-to-right chain rule, MDLM_CHAIN_K positions per forward pass: exact."""
        rows, targets = tokens.size(0), tokens.size(1) - 1
        k = self.config.mdlm_chain_k
        position = torch.arange(targets, device=tokens.device)
        nats = torch.zeros((rows, targets), device=tokens.device)
        for start in range(0, targets, k):
            hidden = (position >= start).expand(rows, targets)
            t = torch.full((rows,), (targets - start) / targets, device=tokens.device)
            scored = (position >= start) & (position < start + k)
            nats = nats + self.hidden_nats(tokens, hidden, t) * scored
        return ScoreOutput(nats=nats, label="exact", passes=math.ceil(targets / k))

    # ------------------------------------------------------------------ sampling

    @torch.no_grad()
    def generate(self, prompt: torch.Tensor, n: int, *, temperature: float = 1.0, top_k: int | None = None,
                 generator: torch.Generator | None = None, steps: int | None = None,
                 block: int = 32) -> torch.Tensor:
        """Append `n` masks to `prompt` [B, P] and un-mask them (LLaDA's sampler): semi-autoregressive
        blocks of `block` positions, left to right; `steps` forward passes in all (default n: one
        token per pass), split evenly over the blocks. Each pass predicts every hidden position of the
        current block (Gumbel-max in float64 at `temperature`, 0 = greedy, optionally top-k) and keeps
        the most confident of them (low-confidence remasking); the rest stay hidden."""
        rows, start = prompt.shape
        x = torch.cat((prompt, torch.full((rows, n), self.mask_id, dtype=prompt.dtype, device=prompt.device)), 1)
        blocks = math.ceil(n / block) if n else 0
        steps = max(steps or n, blocks)
        for b in range(blocks):
            lo, hi = start + b * block, min(start + (b + 1) * block, start + n)
            block_steps = steps // blocks + (b < steps % blocks)
            for s in range(block_steps):
                hidden = x == self.mask_id
                in_block = torch.zeros_like(hidden)
                in_block[:, lo:hi] = True
                todo = hidden & in_block
                quota = torch.ceil(todo.sum(1) / (block_steps - s))  # spread what is left over the steps left
                t = hidden.sum(1) / max(x.size(1) - 1, 1)
                logits = self.logits(x, t.float()).double()
                pred, confidence = self._sample(logits, temperature, top_k, generator)
                confidence = confidence.masked_fill(~todo, -math.inf)
                rank = confidence.argsort(dim=1, descending=True).argsort(dim=1)
                x = torch.where(todo & (rank < quota[:, None]), pred, x)
        return x

    @staticmethod
    def _sample(logits: torch.Tensor, temperature: float, top_k: int | None,
                generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(token, its probability under the untempered model) per position, from float64 logits.
        Gumbel noise in float64: in low precision, Gumbel-max samples at a lower effective
        temperature (Zheng et al. 2024)."""
        if top_k is not None:
            kth = torch.topk(logits, min(top_k, logits.size(-1))).values[..., -1:]
            logits = logits.masked_fill(logits < kth, -math.inf)
        if temperature == 0:
            pred = logits.argmax(-1)
        else:
            u = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=torch.float64)
            gumbel = -torch.log(-torch.log(u.clamp_min(1e-300)))
            pred = (logits / temperature + gumbel).argmax(-1)
        return pred, torch.softmax(logits, -1).gather(-1, pred[..., None])[..., 0]
