"""A model family that exists only in the tests: what the interfaces must carry for new families.

`toybits` is bidirectional (it sees the whole window, so it must hide what it predicts), reserves
one id past the tokenizer's vocabulary (its mask), owns a [16, d] matrix of its own role `bits`
(the 16-bit binary code of each id, mixed into the embedding), and its score is a Monte Carlo
bound: the masked-diffusion NELBO with a linear schedule, E_t[(1/t) Σ_masked −log p(x_i | x_t)],
an upper bound on the −log-likelihood of the model it defines. Tiny on purpose.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from golf.models import register
from golf.models.base import LanguageModel, ScoreOutput
from golf.models.layers import rms_norm

CODE_BITS = 16


@dataclasses.dataclass
class ToyBitsConfig:
    vocab_size: int = 1024
    model_dim: int = 32


@register("toybits", ToyBitsConfig)
class ToyBits(LanguageModel):
    family_roles = {"bits": "embed"}  # Adam at the embedding's LR, not Muon

    def __init__(self, config: ToyBitsConfig) -> None:
        super().__init__(config)
        d = config.model_dim
        self.mask_id = config.vocab_size
        self.tok_emb = nn.Embedding(config.vocab_size + 1, d)
        self.bits = nn.Parameter(torch.randn(CODE_BITS, d) * 0.02)
        self.mix = nn.Linear(d, d, bias=False)  # role attn: what every position reads from the window
        self.gain = nn.Parameter(torch.ones(d))
        nn.init.normal_(self.tok_emb.weight, std=0.02)

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size + 1

    def tensor_roles(self) -> dict[str, str]:
        return {"tok_emb.weight": "emb", "bits": "bits", "mix.weight": "attn", "gain": "control"}

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        codes = ((x[..., None] >> torch.arange(CODE_BITS, device=x.device)) & 1).float() * 2 - 1
        h = self.tok_emb(x) + codes @ self.bits
        h = h + self.mix(rms_norm(h).mean(dim=1, keepdim=True))  # bidirectional: the window's mean
        logits = rms_norm(h) * self.gain @ self.tok_emb.weight[: self.config.vocab_size].T
        return logits  # never the mask id (SUBS: the mask is not a prediction)

    def _nelbo(self, x: torch.Tensor, t: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        masked = torch.rand(x.shape, generator=generator, device=x.device) < t[:, None]
        noisy = torch.where(masked, torch.full_like(x, self.mask_id), x)
        nats = F.cross_entropy(self._logits(noisy).flatten(0, 1), x.flatten(), reduction="none").view(x.shape)
        return nats * masked / t[:, None]

    def loss(self, tokens: torch.Tensor) -> torch.Tensor:
        x = tokens[:, 1:]
        t = torch.rand(x.size(0), device=x.device).clamp_min(0.05)
        return self._nelbo(x, t, None).mean()

    def score(self, tokens: torch.Tensor, *, generator: torch.Generator | None = None,
              samples: int = 1) -> ScoreOutput:
        if samples < 2:
            raise ValueError("toybits needs samples >= 2 for a standard error")
        x = tokens[:, 1:]
        draws = []
        for _ in range(samples):
            t = torch.rand(x.size(0), generator=generator, device=x.device).clamp_min(1e-6)
            draws.append(self._nelbo(x, t, generator))
        per_draw = torch.stack(draws)  # [K, B, T]
        stderr = per_draw.sum(dim=2).std(dim=0) / samples ** 0.5
        return ScoreOutput(nats=per_draw.mean(dim=0), label="bound", stderr=stderr)
