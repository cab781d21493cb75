"""MODEL=bits: a transformer with no V×d table. Tokens go in as their n bits, come out of a bit head.

- Bit embedding: a linear map from a block's k·n ±1 bits to d (role `bits`): no V×d embedding.
- Code: which n bits a token has (golf.codes): its id (CODE=binary) or a hierarchical code built
  before step 0 from training co-occurrences (CODE=cooc) or another artifact's embeddings
  (CODE=emb, CODE_FROM=artifact). The table is the `codes` buffer, stored in the artifact.
- Head (HEAD): `ar`, bitwise-autoregressive, exact; or `diffusion`, a bit-denoising head scored by a
  Monte Carlo ELBO (a `bound`, with its standard error). See golf/models/bit_heads.py.
- Blocks (BLOCK=k, BitLM): each backbone position holds k tokens. Position j sees the tokens up
  to the start of target block j (attention is causal over blocks, i.e. block-causal over tokens)
  and its head models the k·n bits of block j jointly. k = 1 is the plain one-token-per-step model;
  k > 1 runs the backbone on T/k positions and generates k tokens per backbone call.

The backbone is the AR baseline's (golf.models.layers: blocks, U-Net skips, RoPE over positions).
Windows [B, T+1] score targets tokens[:, 1:]; the first target block is predicted from tokens[:, 0]
alone (its input position holds k-1 empty slots, all-zero bits), so T must be a multiple of k.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from golf import codes as bitcodes
from golf.errors import GolfError
from golf.models import register
from golf.models.base import LanguageModel, ScoreOutput
from golf.models.bit_heads import BitwiseARHead, DiffusionHead, LambdaProposal, bitwise_nats, diffusion_elbo
from golf.models.config import BackboneConfig
from golf.models.layers import Block, CastedLinear, KVCache, num_unet_skips, rms_norm, unet_forward, unet_roles

HEADS = ("ar", "diffusion")
CODES = ("binary", "cooc", "emb")
# logit-normal RF time of the v-loss (BitDance/JiT): logit(t) ~ N(-0.8, 0.8), λ = 2·logit(t).
V_LOSS_MU, V_LOSS_SIGMA, V_LOSS_MIN_GAP = -0.8, 0.8, 0.05


@dataclasses.dataclass
class BitsConfig(BackboneConfig):
    """The AR baseline's backbone fields plus this family's (env: HEAD, BLOCK, CODE, ...)."""

    head: str = "ar"              # ar (bitwise-autoregressive, exact) | diffusion (ELBO bound)
    block: int = 1                # tokens per backbone position (BitLM when > 1)
    code: str = "binary"          # binary | cooc | emb
    code_tokens: int = 1_000_000  # CODE=cooc: train tokens counted for co-occurrences
    code_from: str = ""           # CODE=emb: the artifact whose token embedding shapes the code
    head_width: int = 256
    head_layers: int = 2
    diff_draws: int = 4           # diffusion: (λ, ε) draws per backbone feature in training
    lambda_min: float = -8.0      # diffusion: log-SNR range of the bound (prior/recon terms outside)
    lambda_max: float = 5.0
    elbo_weight: float = 1.0      # diffusion: training loss = w·ELBO + (1-w)·v-loss
    sample_steps: int = 20        # diffusion: ancestral steps per generated block

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise ValueError(f"HEAD must be one of {', '.join(HEADS)}, got {self.head!r}")
        if self.code not in CODES:
            raise ValueError(f"CODE must be one of {', '.join(CODES)}, got {self.code!r}")
        if self.code == "emb" and not self.code_from:
            raise ValueError("CODE=emb needs CODE_FROM=<artifact whose token embedding shapes the code>")
        if self.block < 1 or self.head_layers < 1 or self.diff_draws < 1 or self.sample_steps < 1:
            raise ValueError("BLOCK, HEAD_LAYERS, DIFF_DRAWS and SAMPLE_STEPS must be >= 1")
        if not self.lambda_min < self.lambda_max:
            raise ValueError(f"LAMBDA_MIN {self.lambda_min} must be below LAMBDA_MAX {self.lambda_max}")
        if not 0.0 <= self.elbo_weight <= 1.0:
            raise ValueError(f"ELBO_WEIGHT must lie in [0, 1], got {self.elbo_weight}")


@register("bits", BitsConfig)
class BitLM(LanguageModel):
    # The bit embedding is the model's only input table: Adam at the embedding's LR. The heads'
    # matrices get Adam at HEAD_LR like an untied LM head (and a MADE mask's zeros stay zero under
    # Adam, not under Muon). `codes` is a buffer, never optimised.
    family_roles = {"bits": "embed", "bithead": "head", "codes": "scalar"}

    def __init__(self, config: BitsConfig) -> None:
        super().__init__(config)
        c = config
        self.n_bits = bitcodes.code_bits(c.vocab_size)
        self.block_bits = c.block * self.n_bits
        self.proposal = LambdaProposal(c.lambda_min, c.lambda_max)
        # int32: half the raw bytes of int64, and any code fits (n ≤ 31 bits).
        self.register_buffer("codes", bitcodes.binary_codes(c.vocab_size).int())
        self.bit_emb = CastedLinear(self.block_bits, c.model_dim)
        self.blocks = nn.ModuleList(
            Block(c.model_dim, c.num_heads, c.num_kv_heads, c.mlp_mult, c.rope_base, c.qk_gain_init)
            for _ in range(c.num_layers))
        self.skip_weights = nn.Parameter(torch.ones(num_unet_skips(c.num_layers), c.model_dim))
        head_cls = BitwiseARHead if c.head == "ar" else DiffusionHead
        self.head = head_cls(self.block_bits, c.model_dim, c.head_width, c.head_layers)
        self._refresh_code_tables()
        self.register_load_state_dict_post_hook(lambda module, _keys: module._refresh_code_tables())

    @classmethod
    def tiny_config(cls, **overrides: Any) -> BitsConfig:
        """A config small enough for unit and compile tests."""
        fields = dict(vocab_size=64, num_layers=2, model_dim=32, num_heads=2, num_kv_heads=1,
                      head_width=32, head_layers=2, diff_draws=2, sample_steps=4)
        return BitsConfig(**{**fields, **overrides})

    def tensor_roles(self) -> dict[str, str]:
        roles = {"codes": "codes", "bit_emb.weight": "bits", **unet_roles(self.blocks)}
        roles.update({f"head.{name}": "bithead" for name, _ in self.head.named_parameters()})
        return roles

    # ------------------------------------------------------------------------- codes

    def _refresh_code_tables(self) -> None:
        """Tables derived from `codes` (not saved): each token's ±1 bits, which of its bits are a real
        choice (the other branch holds tokens too), and the tree's branches for sampling."""
        n = self.n_bits
        branches = bitcodes.tree_branches(self.codes, n)
        free = branches.all(dim=-1).float()[bitcodes.tree_nodes(self.codes, n)]
        for name, value in (("token_bits", bitcodes.to_bits(self.codes, n)), ("token_free", free),
                            ("branches", branches)):
            self.register_buffer(name, value, persistent=False)

    def fit_to_train(self, take: Callable[[int], torch.Tensor]) -> dict[str, Any]:
        """CODE=cooc/emb: build the hierarchical code before step 0 (from the first CODE_TOKENS train
        tokens, or CODE_FROM's embedding); CODE=binary needs nothing."""
        c = self.config
        if c.code == "binary":
            return {}
        start = time.perf_counter()
        if c.code == "cooc":
            vectors = bitcodes.cooccurrence_vectors(take(c.code_tokens), c.vocab_size)
        else:
            vectors = bitcodes.embedding_vectors(c.code_from)
            if vectors.size(0) < c.vocab_size:
                raise GolfError(f"CODE_FROM {c.code_from} embeds {vectors.size(0)} tokens, not {c.vocab_size}")
        table = bitcodes.hierarchical_codes(vectors[: c.vocab_size], self.n_bits)
        bitcodes.check_codes(table, c.vocab_size, self.n_bits)
        with torch.no_grad():
            self.codes.copy_(table)
        self._refresh_code_tables()
        return {"code": c.code, "bits": self.n_bits, "seconds": round(time.perf_counter() - start, 3)}

    # ------------------------------------------------------------------------- backbone

    def _input_blocks(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens [B, L] → ±1 bits [B, ceil(L/k), k·n], left-padded with all-zero slots so that the
        last token ends the last block."""
        k = self.config.block
        bits = self.token_bits[tokens]
        pad = (-tokens.size(1)) % k
        if pad:
            bits = torch.cat((bits.new_zeros(tokens.size(0), pad, self.n_bits), bits), dim=1)
        return bits.reshape(tokens.size(0), -1, self.block_bits)

    def features(self, blocks: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Backbone features [B, P, d] for input blocks [B, P, k·n] (causal over positions)."""
        x = rms_norm(self.bit_emb(blocks))
        return rms_norm(unet_forward(self.blocks, self.skip_weights, x, cache))

    def _window(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """For windows [B, T+1]: features [B·T/k, d], target bits [B·T/k, k·n] and target ids [B, T]."""
        k, targets = self.config.block, tokens[:, 1:]
        if targets.size(1) % k:
            raise GolfError(f"BLOCK={k} needs a sequence length divisible by {k}, got {targets.size(1)}")
        h = self.features(self._input_blocks(tokens[:, : targets.size(1) - k + 1]))
        x = self.token_bits[targets].reshape(-1, self.block_bits)
        return h.flatten(0, 1), x, targets

    # ------------------------------------------------------------------------- bitwise-AR head

    def _bitwise_nats(self, tokens: torch.Tensor) -> torch.Tensor:
        """Exact −log P per target token [B, T]: the nats of its n bits."""
        h, x, targets = self._window(tokens)
        logits = self.head(h, x.to(h.dtype))
        free = self.token_free[targets].reshape(x.shape)
        return bitwise_nats(logits, x, free).reshape(*targets.shape, self.n_bits).sum(-1)

    # ------------------------------------------------------------------------- diffusion head

    def _elbo(self, h: torch.Tensor, x: torch.Tensor, u: torch.Tensor,
              generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """ELBO estimates [N] per block at λ = proposal(u), plus the λ and x̂ error used (for the v-loss)."""
        lam = self.proposal.sample(u)
        eps = torch.randn(x.shape, generator=generator, device=x.device)
        eps_recon = torch.randn(x.shape, generator=generator, device=x.device)
        err: list[torch.Tensor] = []

        def denoise(z: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
            x_hat = self.head(z.to(h.dtype), l, h).float()
            err.append((x - x_hat).square().sum(-1))
            return x_hat

        return diffusion_elbo(denoise, x, lam, eps, eps_recon, self.proposal), lam, err[0]

    def _diffusion_loss(self, tokens: torch.Tensor) -> torch.Tensor:
        """w·ELBO + (1-w)·v-loss per token, DIFF_DRAWS (λ, ε) draws per backbone feature. λ comes
        from the bound's proposal, stratified over the batch; the v-loss (x-prediction, v-loss,
        logit-normal RF time) is importance-weighted from the same draws, so one head pass serves both."""
        c = self.config
        h, x, _ = self._window(tokens)
        h, x = h.repeat(c.diff_draws, 1), x.repeat(c.diff_draws, 1)
        n = x.size(0)
        u = (torch.randperm(n, device=x.device) + torch.rand(n, device=x.device)) / n
        elbo, lam, err = self._elbo(h, x, u, None)
        loss = c.elbo_weight * elbo.mean()
        if c.elbo_weight < 1:
            # RF time t = sigmoid(λ/2); logit-normal t ⇔ λ ~ N(2μ, (2σ)²); v-loss = ‖x − x̂‖² / (1 − t)².
            mu, sd = 2 * V_LOSS_MU, 2 * V_LOSS_SIGMA
            target_density = torch.exp(-0.5 * ((lam - mu) / sd) ** 2) / (sd * math.sqrt(2 * math.pi))
            gap = (1 - torch.sigmoid(lam / 2)).clamp_min(V_LOSS_MIN_GAP)
            v_loss = err / gap.square() * target_density / self.proposal.density(lam)
            loss = loss + (1 - c.elbo_weight) * v_loss.mean()
        return loss / c.block

    def _diffusion_score(self, tokens: torch.Tensor, generator: torch.Generator | None,
                         samples: int) -> ScoreOutput:
        """Each sample: one (λ, ε) per block, λ stratified over the window's blocks (a random
        permutation of the strata). Block nats are spread evenly over the block's k tokens."""
        k = self.config.block
        h, x, targets = self._window(tokens)
        rows, per_row = targets.size(0), targets.size(1) // k
        if samples < 2 and per_row < 2:
            raise ValueError("a one-block window needs samples >= 2 for a standard error")
        draws = []
        for _ in range(samples):
            strata = torch.argsort(torch.rand(rows, per_row, generator=generator, device=x.device), dim=1)
            u = (strata + torch.rand(rows, per_row, generator=generator, device=x.device)) / per_row
            draws.append(self._elbo(h, x, u.flatten(), generator)[0].view(rows, per_row))
        blocks = torch.stack(draws)  # [S, B, T/k]
        if samples > 1:  # independent replicates: the usual standard error of their mean
            stderr = blocks.sum(2).std(dim=0) / math.sqrt(samples)
        else:  # spread over the row's blocks, as if independent: conservative (it counts the blocks'
            # true differences as noise, and stratifying λ only lowers the true variance)
            stderr = (blocks[0].var(dim=1) * per_row).sqrt()
        nats = (blocks.mean(0) / k).repeat_interleave(k, dim=1)
        return ScoreOutput(nats=nats, label="bound", stderr=stderr)

    # ------------------------------------------------------------------------- interface

    def loss(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.config.head == "ar":
            return self._bitwise_nats(tokens).mean()
        return self._diffusion_loss(tokens)

    def score(self, tokens: torch.Tensor, *, generator: torch.Generator | None = None,
              samples: int = 1) -> ScoreOutput:
        if self.config.head == "ar":
            return ScoreOutput(nats=self._bitwise_nats(tokens), label="exact")
        return self._diffusion_score(tokens, generator, samples)

    def _allowed(self, i: int, bits: torch.Tensor) -> torch.Tensor:
        """[N, 2] bool: the values bit i of a block may take given the bits before it (its token's
        code-tree node must have a token down that branch)."""
        n = self.n_bits
        level, first = i % n, i - i % n
        weights = 2 ** torch.arange(level - 1, -1, -1, device=bits.device)
        prefix = ((bits[:, first:i] > 0).long() * weights).sum(-1)
        return self.branches[(1 << level) - 1 + prefix]

    def _decode(self, bits: torch.Tensor) -> torch.Tensor:
        """Block bits [N, k·n] → token ids [N, k]: the token whose code is nearest (exact when valid)."""
        slots = bits.reshape(bits.size(0), self.config.block, self.n_bits).float()
        return (slots @ self.token_bits.t()).argmax(dim=-1)

    @torch.no_grad()
    def generate(self, prompt: torch.Tensor, n: int, *, temperature: float = 1.0,
                 top_k: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """k tokens per backbone call, with a KV cache over block positions. A bit has two values, so
        top_k does not apply; temperature 0 is greedy (AR head) / noise-free (diffusion head)."""
        cache, out = KVCache(), prompt
        step_input = self._input_blocks(prompt)
        while out.size(1) < prompt.size(1) + n:
            h = self.features(step_input, cache)[:, -1]
            cache.length += step_input.size(1)
            if self.config.head == "ar":
                bits = self.head.sample(h, self._allowed, temperature=temperature, generator=generator)
            else:
                bits = self.head.sample(h, steps=self.config.sample_steps, proposal=self.proposal,
                                        temperature=temperature, generator=generator)
            block = self._decode(bits)
            out = torch.cat((out, block), dim=1)
            step_input = self.token_bits[block].reshape(block.size(0), 1, self.block_bits)
        return out[:, : prompt.size(1) + n]
