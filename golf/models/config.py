"""The transformer fields every family's config starts from, with the baseline's names and defaults.

Field names are the official environment variables, lower-cased (VOCAB_SIZE → vocab_size), so the
trainer reads any family's config from the environment the same way. `BackboneConfig` is the shape
of the stack of blocks; `TransformerConfig` adds what a softmax head over a token embedding needs
(tying, its init, the logit soft-cap). A family's config inherits one and adds fields after them.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class BackboneConfig:
    vocab_size: int = 1024
    num_layers: int = 9
    model_dim: int = 512
    num_heads: int = 8
    num_kv_heads: int = 4
    mlp_mult: int = 2
    rope_base: float = 10000.0
    qk_gain_init: float = 1.5

    def __post_init__(self) -> None:
        """A hook for checks; the backbone's own are done by the layers it builds."""


@dataclasses.dataclass
class TransformerConfig(BackboneConfig):
    tie_embeddings: bool = True
    tied_embed_init_std: float = 0.005
    logit_softcap: float = 30.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.logit_softcap <= 0:
            raise ValueError(f"logit_softcap must be > 0, got {self.logit_softcap}")
