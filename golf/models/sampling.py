"""Drawing the next token from logits: the one sampling rule every `generate` shares.

temperature 0 is greedy decoding; otherwise logits are divided by the temperature, cut to the
`top_k` largest (when given) and sampled from `generator`, so a seed reproduces a sample.
"""

from __future__ import annotations

import torch


def sample_next(logits: torch.Tensor, temperature: float, top_k: int | None,
                generator: torch.Generator | None) -> torch.Tensor:
    """One id per row of `logits` [B, V], as [B, 1]."""
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits / temperature
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator)
