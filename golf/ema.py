"""An exponential moving average of the weights, the ones a run quantizes and scores (EMA_DECAY).

shadow ← decay·shadow + (1 − decay)·weights after every optimizer step, kept in fp32 whatever the
model's dtype. The top records average with decay 0.9965 (≈ the last 285 steps): the average sits
nearer the bottom of the loss valley than the last iterate. Every rank holds identical weights
under DDP, so every rank's average is the same without communication.
"""

from __future__ import annotations

import torch
from torch import nn


class WeightEMA:
    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.shadow = {name: t.detach().float().clone() for name, t in model.state_dict().items()
                       if t.is_floating_point()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for name, t in model.state_dict().items():
            if name in self.shadow:
                self.shadow[name].lerp_(t.detach().float(), 1.0 - self.decay)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Load the averaged weights into `model`, each in the dtype the model keeps it in."""
        state = model.state_dict()
        for name, avg in self.shadow.items():
            state[name].copy_(avg.to(state[name].dtype))
