"""golf's one limits policy: what it will read, parse, build and score from someone else's files.

`golf score` and `golf pack --check` run on other people's artifacts and record folders, so every
size they act on is bounded by the challenge, never by what a file declares. The artifact
container's bounds live in `quant.limits` (quant never imports golf) and derive from the same
cap; this module adds the record-folder bounds, the model-config check that runs before any
weight is allocated, and the scoring memory estimate. docs/limits.md states the policy in prose.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import torch

from golf import models
from golf.errors import GolfError
from golf.challenge import CAP_BYTES
from quant.limits import MAX_PARAMS

# A record's train_gpt.py counts against the cap, so a script larger than the cap cannot be a
# record: it is refused before it is read, let alone compiled (compiling costs ~100x its size).
MAX_SCRIPT_BYTES = CAP_BYTES
MAX_RECORD_JSON_BYTES = 1 << 20  # submission.json and result.json: a few KB in practice
# Scoring: the decoded weights, the model built from them, and one batch of activations must fit.
# Batches shrink to fit; an artifact whose single window does not fit is refused.
SCORE_MEMORY_BYTES = 4 << 30
# Monte Carlo draws per window an artifact may ask its scorer for (meta.eval.samples): each is a
# full forward pass, so this bounds the compute a manifest can demand; real runs use a handful.
MAX_SAMPLES = 1024
# Score-first TTT knobs an artifact may record (meta.eval.ttt), each a multiplier of scoring compute
# or memory: passes per chunk or phase, phases, documents side by side (adapter memory is checked
# against ADAPTER_MEMORY_BYTES when the adapters are built). Records use a handful of each.
MAX_TTT_EPOCHS = 1000
MAX_TTT_PHASES = 10_000
MAX_TTT_DOC_BATCH = 65_536
# Per-document LoRA state (weights, gradients, two Adam moments, fp32) an artifact's TTT plan may ask
# for. The records' phased TTT (rank 96, 64 documents, q/k/v/o/MLP/head on 11 × 512, SP8192) needs
# about 5.4 GiB, which an 80 GB GPU holds beside the model; a manifest asking for far more is refused.
ADAPTER_MEMORY_BYTES = 8 << 30


def kind_ok(default: Any, value: Any) -> bool:
    """Whether `value` has the type a config field with `default` needs (JSON has no int/float split
    for floats, so an int is a valid float; a bool is never an int)."""
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if isinstance(default, str):
        return isinstance(value, str)
    return True


def config_from_manifest(variant: Any, values: Any) -> Any:
    """The variant's config from an artifact manifest, with every field's type and range checked
    (the family's own checks run in its config's __post_init__), before anything is built."""
    if not isinstance(variant, str):
        raise GolfError(f"artifact manifest: model variant {str(variant)[:40]!r} is not a name")
    cls = models.config_class(variant)
    if not isinstance(values, dict):
        raise GolfError(f"artifact manifest: model config for {variant!r} is not an object")
    for field in dataclasses.fields(cls):
        if field.name not in values or field.default is dataclasses.MISSING:
            continue
        value = values[field.name]
        if not kind_ok(field.default, value):
            raise GolfError(f"artifact manifest: model config {field.name}={str(value)[:40]!r} is not a "
                            f"finite {type(field.default).__name__}")
        # Sizes are the family's to check (some ints are -1 = off); a magnitude past any tensor is never one.
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_PARAMS:
            raise GolfError(f"artifact manifest: model config {field.name}={value} is outside ±{MAX_PARAMS:,}")
    return models.make_config(variant, values)


def meta_model(variant: str, config: Any) -> models.LanguageModel:
    """The real model on the meta device: every shape, no memory, even at absurd sizes."""
    try:
        with torch.device("meta"):
            return models.build(variant, config)
    except (ValueError, TypeError) as e:
        raise GolfError(f"cannot build model {variant!r} with this config: {e}") from None


def check_tensors_fit(variant: str, config: Any, shapes: Mapping[str, tuple[int, ...]]) -> None:
    """Refuse unless the model `config` describes has exactly the tensors (names and shapes) present.

    Building even on the meta device costs time per module, so a config claiming more layers than
    the artifact has tensors (each layer holds at least one) is refused before it is built.
    """
    layers = getattr(config, "num_layers", 0)
    if isinstance(layers, int) and layers > len(shapes):
        raise GolfError(f"artifact config says {layers} layers but the artifact holds only {len(shapes)} tensors")
    expected = {k: tuple(t.shape) for k, t in meta_model(variant, config).state_dict().items()}
    if expected == dict(shapes):
        return
    implied, present = sum(math.prod(s) for s in expected.values()), sum(math.prod(s) for s in shapes.values())
    missing = sorted(set(expected) - set(shapes))[:2]
    unexpected = sorted(set(shapes) - set(expected))[:2]
    wrong = [f"{k} {list(shapes[k])} (config: {list(expected[k])})" for k in sorted(set(expected) & set(shapes))
             if expected[k] != tuple(shapes[k])][:2]
    detail = "; ".join(filter(None, [f"missing {missing}" if missing else "",
                                     f"unexpected {unexpected}" if unexpected else "",
                                     f"shape {', '.join(wrong)}" if wrong else ""]))
    raise GolfError(f"artifact tensors do not match variant {variant!r}: the config implies {implied:,} parameters "
                    f"in {len(expected)} tensors, the artifact holds {present:,} in {len(shapes)} ({detail})")


def window_activation_bytes(config: Any, seq_len: int) -> int:
    """A generous estimate of one eval window's activation memory: fp32 logits and the
    cross-entropy's copies of them, the residual stream's working set, and attention scores
    (materialized when SDPA falls back to its math kernel)."""
    vocab = int(getattr(config, "vocab_size", 0))
    dim = int(getattr(config, "model_dim", 0))
    heads = int(getattr(config, "num_heads", 1))
    return 4 * seq_len * (3 * vocab + 16 * dim + 2 * heads * seq_len)


def score_batch_windows(config: Any, weight_bytes: int, seq_len: int, requested: int) -> int:
    """How many windows to score per forward pass so the estimate stays within SCORE_MEMORY_BYTES;
    `weight_bytes` is the weights at their widest (decoded or fp32), held twice: decoded and in the model."""
    per_window = window_activation_bytes(config, seq_len)
    room = SCORE_MEMORY_BYTES - 2 * weight_bytes
    if per_window > room:
        raise GolfError(f"scoring would need about {(2 * weight_bytes + per_window) / 2**30:.1f} GiB for one "
                        f"{seq_len}-token window (weights {weight_bytes:,} bytes); golf scores within "
                        f"{SCORE_MEMORY_BYTES / 2**30:.0f} GiB")
    return max(1, min(requested, room // per_window))


def require_finite(what: str, value: float) -> float:
    if not math.isfinite(value):
        raise GolfError(f"{what} is {value}: not a finite number, so it is not a score")
    return value
