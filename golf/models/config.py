"""The transformer fields every family's config starts from, with the baseline's names and defaults.

Field names are the official environment variables, lower-cased (VOCAB_SIZE → vocab_size), so the
trainer reads any family's config from the environment the same way. `BackboneConfig` is the shape
of the stack of blocks; `TransformerConfig` adds what a softmax head over a token embedding needs
(tying, its init, the logit soft-cap). A family's config inherits one and adds fields after them.
"""

from __future__ import annotations

import dataclasses

import torch

FP32_MAX = torch.finfo(torch.float32).max


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
        # Checked here, before anything is allocated: the trainer (env vars) and the scorer (an
        # artifact's manifest) both build from this config.
        for name in ("vocab_size", "num_layers", "model_dim", "num_heads", "num_kv_heads", "mlp_mult"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.model_dim % self.num_heads:
            raise ValueError(f"num_heads {self.num_heads} must divide model_dim {self.model_dim}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_kv_heads {self.num_kv_heads} must divide num_heads {self.num_heads}")
        if self.model_dim // self.num_heads % 2:
            raise ValueError(f"head dim {self.model_dim // self.num_heads} (model_dim / num_heads) must be even "
                             "for RoPE")
        for name in ("rope_base", "qk_gain_init"):
            if not abs(getattr(self, name)) <= FP32_MAX:  # also refuses NaN: these become fp32 tensors
                raise ValueError(f"{name} must be a finite fp32 number, got {getattr(self, name)}")
        if self.rope_base <= 0:
            raise ValueError(f"rope_base must be > 0, got {self.rope_base}")


@dataclasses.dataclass
class TransformerConfig(BackboneConfig):
    tie_embeddings: bool = True
    tied_embed_init_std: float = 0.005
    logit_softcap: float = 30.0

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("tied_embed_init_std", "logit_softcap"):
            if not abs(getattr(self, name)) <= FP32_MAX:
                raise ValueError(f"{name} must be a finite fp32 number, got {getattr(self, name)}")
        if self.logit_softcap <= 0 or self.tied_embed_init_std < 0:
            raise ValueError(f"logit_softcap ({self.logit_softcap}) must be > 0, "
                             f"tied_embed_init_std ({self.tied_embed_init_std}) >= 0")
