"""SpamLang at CPU scale: can a model copy a token id it never saw in training?

A sequence is one random first token repeated `length` times. A random half of the vocabulary is
used as first tokens in training; the other half appears only at evaluation. An untied vanilla LM
never trains the embedding rows or head rows of those ids, so it cannot copy them; a bit-embedding
model reads and writes ids through their bits, each of which took both values in training, so it
generalises (Colton, "Small LLMs Have a Big Problem", 2026; methods-diffusion-bits.md §4.3–4.4).

Reported per model: held-out copy accuracy (greedy continuation of the first token, through the
model's own `generate`) on seen and unseen ids, and the bits per token at the copy positions from
`score` (exact, or an ELBO bound with its standard error; the true conditional entropy is 0).
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import torch
from tqdm import tqdm

from golf import models
from golf.errors import GolfError
from golf.models.base import LanguageModel

# name → (variant, config fields on top of the shared backbone)
MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "vanilla-untied": ("ar", {"tie_embeddings": False}),
    "vanilla-tied": ("ar", {"tie_embeddings": True}),
    "bits-ar": ("bits", {"head": "ar", "head_width": 128}),
    "bits-diffusion": ("bits", {"head": "diffusion", "head_width": 128, "diff_draws": 4}),
}


@dataclasses.dataclass(frozen=True)
class SpamLangSetup:
    vocab: int = 4096
    length: int = 16
    steps: int = 1500
    batch: int = 32
    lr: float = 2e-3
    model_dim: int = 64
    layers: int = 2
    heads: int = 4
    eval_sequences: int = 256
    score_samples: int = 4  # Monte Carlo draws per window for a bound (≥ 2: replicate standard error)
    seed: int = 0

    def check(self) -> None:
        if self.vocab < 4 or self.length < 2 or self.steps < 1 or self.batch < 1 or self.eval_sequences < 1:
            raise GolfError("spamlang needs vocab >= 4, length >= 2, steps, batch and eval sequences >= 1")
        if self.score_samples < 2:
            raise GolfError("spamlang needs --score-samples >= 2 (the bound's standard error comes from them)")


def split_vocabulary(setup: SpamLangSetup) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids used as first tokens in training, ids kept for evaluation only): a seeded random half,
    so every bit of the code takes both values in training."""
    order = torch.randperm(setup.vocab, generator=torch.Generator().manual_seed(setup.seed))
    return order[: setup.vocab // 2], order[setup.vocab // 2:]


def sequences(ids: torch.Tensor, count: int, length: int, generator: torch.Generator) -> torch.Tensor:
    first = ids[torch.randint(len(ids), (count,), generator=generator)]
    return first[:, None].expand(count, length).contiguous()


def build_model(name: str, setup: SpamLangSetup) -> LanguageModel:
    if name not in MODELS:
        raise GolfError(f"unknown spamlang model {name!r}; known: {', '.join(MODELS)}")
    variant, extra = MODELS[name]
    backbone = {"vocab_size": setup.vocab, "num_layers": setup.layers, "model_dim": setup.model_dim,
                "num_heads": setup.heads, "num_kv_heads": setup.heads}
    return models.build(variant, {**backbone, **extra})


def train(model: LanguageModel, name: str, setup: SpamLangSetup, train_ids: torch.Tensor, progress: bool) -> float:
    """AdamW on fresh SpamLang batches; returns the wall-clock seconds."""
    data = torch.Generator().manual_seed(setup.seed + 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=setup.lr, weight_decay=0.0)
    start = time.perf_counter()
    model.train()
    for _ in tqdm(range(setup.steps), desc=name, unit="step", disable=not progress, leave=False):
        loss = model.loss(sequences(train_ids, setup.batch, setup.length, data))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


@torch.no_grad()
def evaluate(model: LanguageModel, setup: SpamLangSetup, ids: torch.Tensor) -> dict[str, Any]:
    """Greedy-continuation copy accuracy and bits/token at the copy positions on `ids`."""
    model.eval()
    generator = torch.Generator().manual_seed(setup.seed + 2)
    windows = sequences(ids, setup.eval_sequences, setup.length, generator)
    continued = model.generate(windows[:, :1], setup.length - 1, temperature=0.0, generator=generator)
    accuracy = (continued[:, 1:] == windows[:, 1:]).float().mean().item()
    scored = model.score(windows, generator=generator, samples=setup.score_samples)
    tokens = scored.nats.numel()
    out = {"copy_acc": accuracy, "bits_per_token": scored.nats.double().sum().item() / tokens / math.log(2),
           "label": scored.label}
    if scored.stderr is not None:
        out["bits_stderr"] = scored.stderr.double().square().sum().sqrt().item() / tokens / math.log(2)
    return out


def run_spamlang(setup: SpamLangSetup, names: list[str] | None = None, *, progress: bool = False) -> dict[str, Any]:
    """Train and evaluate each named model (default: all of MODELS) on one SpamLang setup."""
    setup.check()
    names = list(MODELS) if names is None else names
    train_ids, unseen_ids = split_vocabulary(setup)
    results = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # models this small run fastest on one thread (no sync per tiny op)
    try:
        for name in names:
            results[name] = _run_one(name, setup, train_ids, unseen_ids, progress)
    finally:
        torch.set_num_threads(threads)
    return {"command": "toy spamlang", "setup": dataclasses.asdict(setup), "models": results}


def _run_one(name: str, setup: SpamLangSetup, train_ids: torch.Tensor, unseen_ids: torch.Tensor,
             progress: bool) -> dict[str, Any]:
    torch.manual_seed(setup.seed)
    model = build_model(name, setup)
    seconds = train(model, name, setup, train_ids, progress)
    seen, unseen = evaluate(model, setup, train_ids), evaluate(model, setup, unseen_ids)
    return {"params": sum(p.numel() for p in model.parameters()), "train_seconds": round(seconds, 2),
            "label": seen["label"],
            **{f"{key}_seen": value for key, value in seen.items() if key != "label"},
            **{f"{key}_unseen": value for key, value in unseen.items() if key != "label"}}
