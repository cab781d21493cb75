"""Short digests of token windows and tensors, shared by the warm-up probe and the test reading it."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import torch


def window_digests(tokens: torch.Tensor) -> list[str]:
    """One digest per window (row) of an int64 token batch."""
    return [hashlib.sha256(row.cpu().contiguous().numpy().tobytes()).hexdigest()[:16] for row in tokens]


def tensors_digest(tensors: Iterable[torch.Tensor]) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
