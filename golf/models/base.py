"""The interface every model family implements.

`loss` is what the trainer minimises, `score` is what `golf score` sums, `generate` samples.
`score` returns per-token nats and a label: `exact` when the model defines a normalised
distribution scored by the chain rule, `bound` when the number is an upper bound (an ELBO, say),
which must then come with a Monte Carlo standard error, reproducible from the generator it was
given. Nothing else may be called a bpb.

`tensor_roles` names the role of every saved tensor. The optimizer split, the quantization rule's
groups, `golf budget`'s components and `golf inspect`'s grouping all derive from it, never from
guesses about names or shapes. A model's vocabulary (`vocab_size`) may exceed the tokenizer's: ids
past the tokenizer's are reserved (a mask id, say): never targets, worth 0 bytes.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
from torch import nn

from golf.errors import GolfError

# The roles every family may use, with the optimizer group each gets (the official split: Adam for
# the embedding, an untied head and the small control tensors; Muon for the block matrices).
# `other` is Muon for a matrix and Adam for anything else. A family adds roles of its own through
# `LanguageModel.family_roles`.
STANDARD_ROLES: dict[str, str] = {"emb": "embed", "head": "head", "attn": "matrix", "mlp": "matrix",
                                  "control": "scalar", "other": "matrix"}
OPTIMIZER_GROUPS = ("embed", "head", "matrix", "scalar")


@dataclasses.dataclass
class ScoreOutput:
    """Per-token nats [B, T] for the targets tokens[:, 1:], and how to read their sum."""

    nats: torch.Tensor
    label: str  # "exact" or "bound"
    # For a Monte Carlo bound: the standard error of each row's nats sum ([B]); None when exact.
    stderr: torch.Tensor | None = None


class LanguageModel(nn.Module):
    variant: ClassVar[str] = ""
    # A family's own roles → optimizer group (one of OPTIMIZER_GROUPS), e.g. {"bits": "embed"}.
    family_roles: ClassVar[dict[str, str]] = {}

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config

    @property
    def vocab_size(self) -> int:
        """Every id the model knows: the tokenizer's plus any reserved ones (a family with a mask id
        overrides this). Ids ≥ the tokenizer's vocabulary are reserved."""
        return int(self.config.vocab_size)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        # DDP and torch.compile wrap `forward`, so it is the training objective.
        return self.loss(tokens)

    def loss(self, tokens: torch.Tensor) -> torch.Tensor:
        """Scalar training loss on windows [B, T+1] (inputs tokens[:, :-1], targets tokens[:, 1:])."""
        raise NotImplementedError

    def score(self, tokens: torch.Tensor, *, generator: torch.Generator | None = None,
              samples: int = 1) -> ScoreOutput:
        """Per-target nats [B, T] on windows [B, T+1], with an `exact`/`bound` label.

        Exact models ignore `generator` and `samples`; a Monte Carlo model draws `samples` estimates
        per window from `generator` (so a seed reproduces the number) and reports their standard error.
        """
        raise NotImplementedError

    def generate(self, prompt: torch.Tensor, n: int, *, temperature: float = 1.0,
                 top_k: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Continue `prompt` [B, P] by `n` tokens; returns [B, P+n]."""
        raise NotImplementedError

    def tensor_roles(self) -> dict[str, str]:
        """{state-dict tensor name: role} for every saved tensor (see STANDARD_ROLES, family_roles)."""
        raise NotImplementedError

    def config_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)

    def checked_roles(self) -> dict[str, str]:
        """`tensor_roles()`, refused with the tensor's name if it misses a saved tensor, names one
        that does not exist, or uses a role the family never declared."""
        roles = self.tensor_roles()
        saved = set(self.state_dict())
        missing, extra = sorted(saved - set(roles)), sorted(set(roles) - saved)
        if missing:
            raise GolfError(f"model {self.variant!r}: tensor_roles() gives no role for {', '.join(missing)}")
        if extra:
            raise GolfError(f"model {self.variant!r}: tensor_roles() names tensors that do not exist: "
                            f"{', '.join(extra)}")
        known = {**STANDARD_ROLES, **self.family_roles}
        bad = sorted(f"{r}={g}" for r, g in self.family_roles.items() if g not in OPTIMIZER_GROUPS)
        if bad:
            raise GolfError(f"model {self.variant!r}: family_roles {', '.join(bad)} name no optimizer group "
                            f"(one of {', '.join(OPTIMIZER_GROUPS)})")
        unknown = sorted({f"{name}={role}" for name, role in roles.items() if role not in known})
        if unknown:
            raise GolfError(f"model {self.variant!r}: unknown tensor role(s) {', '.join(unknown)} "
                            f"(known: {', '.join(sorted(known))}; declare a family's own in family_roles)")
        return roles

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Split parameters for the optimizers by their roles.

        `embed` (token embedding) and `head` (untied LM head) get their own Adam learning rates;
        `matrix` (2-D block weights) go to Muon; `scalar` (vectors and control tensors) to Adam.
        Muon needs a matrix, so a role asking for it on a tensor of another rank gets Adam.
        """
        roles = self.checked_roles()
        known = {**STANDARD_ROLES, **self.family_roles}
        groups: dict[str, list[nn.Parameter]] = {g: [] for g in OPTIMIZER_GROUPS}
        for name, param in self.named_parameters():
            group = known[roles[name]]
            if group == "matrix" and param.ndim != 2:
                group = "scalar"
            groups[group].append(param)
        return groups
