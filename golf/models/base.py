"""The interface every model family implements.

`loss` is what the trainer minimises, `score` is what `golf score` sums, `generate` samples.
`score` returns per-token nats and a label: `exact` when the model defines a normalised
distribution scored by the chain rule, `bound` when the number is an upper bound (an ELBO, say),
which must then come with a Monte Carlo standard error. Nothing else may be called a bpb.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
from torch import nn

# The official names of the small "control" tensors (gains, mixes, skip weights): one list for the
# optimizer split here (Adam, not Muon) and the int8 export (kept in fp32).
from quant.rules import CONTROL_PATTERNS as CONTROL_TENSOR_NAME_PATTERNS


@dataclasses.dataclass
class ScoreOutput:
    """Per-token nats [B, T] for the targets tokens[:, 1:], and how to read their sum."""

    nats: torch.Tensor
    label: str  # "exact" or "bound"
    # For a Monte Carlo bound: the standard error of each row's nats sum ([B]); None when exact.
    stderr: torch.Tensor | None = None


class LanguageModel(nn.Module):
    variant: ClassVar[str] = ""

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        # DDP and torch.compile wrap `forward`, so it is the training objective.
        return self.loss(tokens)

    def loss(self, tokens: torch.Tensor) -> torch.Tensor:
        """Scalar training loss on windows [B, T+1] (inputs tokens[:, :-1], targets tokens[:, 1:])."""
        raise NotImplementedError

    def score(self, tokens: torch.Tensor) -> ScoreOutput:
        """Per-target nats [B, T] on windows [B, T+1], with an `exact`/`bound` label."""
        raise NotImplementedError

    def generate(self, prompt: torch.Tensor, n: int, *, temperature: float = 1.0,
                 top_k: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Continue `prompt` [B, P] by `n` tokens; returns [B, P+n]."""
        raise NotImplementedError

    def config_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Split parameters for the optimizers, by the official baseline's rule.

        `embed` (token embedding) and `head` (untied LM head) get their own Adam learning rates;
        `matrix` (2-D block weights) go to Muon; `scalar` (vectors and control tensors) to Adam.
        """
        groups: dict[str, list[nn.Parameter]] = {"embed": [], "head": [], "matrix": [], "scalar": []}
        for name, param in self.named_parameters():
            if name.startswith("tok_emb."):
                groups["embed"].append(param)
            elif name.startswith("lm_head."):
                groups["head"].append(param)
            elif param.ndim == 2 and not any(p in name for p in CONTROL_TENSOR_NAME_PATTERNS):
                groups["matrix"].append(param)
            else:
                groups["scalar"].append(param)
        return groups
