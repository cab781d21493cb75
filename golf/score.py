"""Score a model on the validation split: summed nats, exact byte counts, bpb and its label.

One function does the evaluation for the trainer's periodic and final validation and for
`golf score`, so the two can never disagree by construction. Windows are the baseline's
non-overlapping `seq_len` blocks, cut into batches of `batch_windows` on one global grid; ranks
take contiguous shares of whole batches and sum nats, tokens and bytes in float64 with one
all-reduce, so every batch holds the same windows whatever the world size.

Monte Carlo scores (a `bound` such as an ELBO) draw their noise from a generator seeded by the
score's seed and the index of the batch's first window, so the same seed, batch size and world size
give the same number (DDP or not, up to float64 summation order), and another seed an independent
estimate. The trainer records its seed, samples and batch size in the artifact, so `golf score`
reproduces the trainer's number by default.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from tqdm import tqdm

from golf import limits, models
from golf.bpb import (
    ByteTable,
    audit_bytes,
    bits_per_byte,
    build_byte_table,
    load_tokenizer,
    window_bytes,
)
from golf.data import find_shards, load_val_tokens, rank_slice, val_windows
from golf.embedded import file_sha256
from golf.errors import GolfError
from golf.models.base import LanguageModel
from quant import read_artifact

LN2 = math.log(2.0)
DEFAULT_BATCH_TOKENS = 65_536


@dataclasses.dataclass
class ScoreResult:
    nats_sum: float
    tokens: int
    bytes: int
    label: str  # "exact" or "bound"
    seconds: float
    # Standard error of nats_sum for Monte Carlo bounds; None for exact scores.
    nats_stderr: float | None = None
    seed: int = 0  # what seeded the Monte Carlo draws (recorded for exact scores too)
    samples: int = 1  # Monte Carlo estimates per window (exact models ignore it)

    @property
    def val_loss(self) -> float:
        return self.nats_sum / self.tokens

    @property
    def val_bpb(self) -> float:
        return bits_per_byte(self.nats_sum, self.bytes)

    @property
    def bpb_stderr(self) -> float | None:
        return None if self.nats_stderr is None else self.nats_stderr / LN2 / self.bytes

    def as_dict(self) -> dict[str, Any]:
        return {"val_loss": self.val_loss, "val_bpb": self.val_bpb, "label": self.label,
                "tokens": self.tokens, "bytes": self.bytes, "seconds": round(self.seconds, 3),
                "val_bpb_stderr": self.bpb_stderr, "seed": self.seed, "samples": self.samples,
                "implied_bytes_per_token": self.bytes / self.tokens}


def batch_generator(seed: int, first_window: int, device: torch.device) -> torch.Generator:
    """The generator for the batch starting at window `first_window`: a hash of both, so batches
    (and DDP ranks) draw independent noise that depends on nothing else."""
    digest = hashlib.sha256(f"golf-score:{seed}:{first_window}".encode()).digest()
    return torch.Generator(device=device).manual_seed(int.from_bytes(digest[:8], "little") >> 1)


@torch.inference_mode()
def evaluate(model: LanguageModel, windows: torch.Tensor, table: ByteTable, *,
             batch_windows: int, device: torch.device, rank: int = 0, world_size: int = 1,
             autocast_dtype: torch.dtype | None = None, progress: bool = False, seed: int = 0,
             samples: int = 1) -> ScoreResult:
    """Sum per-token nats and target bytes over `windows` [N, T+1] (this rank's share).

    `seed` and `samples` reach Monte Carlo models (see the module docstring); exact ones ignore them.
    """
    if samples < 1:
        raise GolfError(f"samples must be >= 1, got {samples}")
    start = time.perf_counter()
    was_training = model.training
    model.eval()
    table = table.to(device)
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # nats, tokens, bytes, variance
    labels: set[str] = set()
    n_windows = windows.size(0)
    mine = rank_slice(math.ceil(n_windows / batch_windows), rank, world_size)
    autocast = (torch.autocast(device_type=device.type, dtype=autocast_dtype)
                if autocast_dtype is not None else nullcontext())
    batches = range(mine.start * batch_windows, min(mine.stop * batch_windows, n_windows), batch_windows)
    for lo in tqdm(batches, desc="score", unit="batch", disable=not progress or None, leave=False):
        batch = windows[lo:min(lo + batch_windows, n_windows)].to(device, non_blocking=True)
        with autocast:
            out = model.score(batch, generator=batch_generator(seed, lo, device), samples=samples)
        labels.add(out.label)
        sums[0] += out.nats.double().sum()
        sums[1] += out.nats.numel()
        sums[2] += window_bytes(table, batch).sum()
        if out.stderr is not None:
            sums[3] += out.stderr.double().square().sum()
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(sums, op=dist.ReduceOp.SUM)
    model.train(was_training)
    if len(labels) > 1:
        raise RuntimeError(f"model returned mixed score labels {sorted(labels)}")
    label = labels.pop() if labels else "exact"
    nats, tokens, n_bytes, variance = sums.tolist()
    return ScoreResult(nats_sum=nats, tokens=int(tokens), bytes=int(n_bytes), label=label,
                       seconds=time.perf_counter() - start,
                       nats_stderr=math.sqrt(variance) if label == "bound" else None, seed=seed, samples=samples)


def eval_autocast_dtype(device: torch.device) -> torch.dtype | None:
    """bf16 on GPU, as the official eval; fp32 on CPU. The trainer's final roundtrip and
    `golf score` both use this, so on the same device they compute the same number."""
    return torch.bfloat16 if device.type == "cuda" else None


def model_from_artifact(meta: dict[str, Any], state_dict: dict[str, torch.Tensor]) -> LanguageModel:
    """Rebuild a model from an artifact's manifest and decoded tensors alone.

    The config is type- and range-checked and its shapes compared with the tensors present on the
    meta device first, so a hostile manifest can neither allocate nor crash the build.
    """
    spec = meta.get("model")
    if not isinstance(spec, dict):
        raise GolfError("artifact manifest has no model description (meta.model)")
    config = limits.config_from_manifest(spec.get("variant"), spec.get("config"))
    limits.check_tensors_fit(spec["variant"], config, {k: tuple(t.shape) for k, t in state_dict.items()})
    model = models.build(spec["variant"], config)
    model.load_state_dict(state_dict, strict=True)
    return model


def check_tokenizer_matches(meta: dict[str, Any], tokenizer_path: Path, tokenizer_sha256: str) -> None:
    """Refuse to score with a tokenizer other than the one the model was trained with."""
    recorded = meta.get("tokenizer")
    expected = recorded.get("sha256") if isinstance(recorded, dict) else None
    if not isinstance(expected, str):
        raise GolfError("artifact records no tokenizer sha256; cannot check the tokenizer")
    if expected != tokenizer_sha256:
        raise GolfError(f"tokenizer {tokenizer_path} (sha256 {tokenizer_sha256[:12]}…) is not the one "
                        f"this artifact was trained with (sha256 {expected[:12]}…)")


def check_vocab(model: LanguageModel, tokenizer_vocab: int) -> None:
    """The model must know every tokenizer id; ids past the tokenizer's are the model's reserved ones
    (a mask id, say). Data is then read with the tokenizer's size as its bound, so no data token can
    hit a reserved id."""
    if tokenizer_vocab > model.vocab_size:
        raise GolfError(f"the tokenizer has {tokenizer_vocab} pieces but model {model.variant!r} knows only "
                        f"{model.vocab_size} ids (VOCAB_SIZE={model.config.vocab_size}); they must match")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise GolfError("--device cuda requested but CUDA is not available")
    if name not in ("cpu", "cuda"):
        raise GolfError(f"--device must be auto, cpu or cuda, not {name!r}")
    return torch.device(name)


def recorded_eval(meta: dict[str, Any]) -> dict[str, int | None]:
    """How the trainer scored (meta.eval: seq_len, seed, samples, batch_windows), each checked:
    None where it records nothing."""
    recorded = meta.get("eval")
    recorded = recorded if isinstance(recorded, dict) else {}
    out: dict[str, int | None] = {}
    for key, least, most in (("seq_len", 1, limits.MAX_PARAMS), ("seed", -(2**63), 2**63 - 1),
                             ("samples", 1, limits.MAX_SAMPLES), ("batch_windows", 1, limits.MAX_PARAMS)):
        value = recorded.get(key)
        ok = value is None or (isinstance(value, int) and not isinstance(value, bool) and least <= value <= most)
        if not ok:
            raise GolfError(f"artifact manifest: eval.{key} {str(value)[:40]!r} is not a valid {key}")
        out[key] = value
    return out


def score_artifact(artifact_path: Path, *, data: Path, tokenizer: Path, max_tokens: int | None = None,
                   seq_len: int | None = None, batch_tokens: int | None = None, device: str = "auto",
                   audit: bool = False, progress: bool = True, seed: int | None = None,
                   samples: int | None = None) -> dict[str, Any]:
    """Rebuild the model from the artifact alone and score it on the val shards under `data`.
    `seed` and `samples` drive Monte Carlo models (a `bound`; exact models ignore them); by default
    the ones the trainer scored with, recorded in the artifact, so its number is reproduced."""
    for flag, value in (("--max-tokens", max_tokens), ("--seq-len", seq_len), ("--batch-tokens", batch_tokens),
                        ("--samples", samples)):
        if value is not None and value < 1:
            raise GolfError(f"{flag} must be a positive number, got {value}")
    dev = resolve_device(device)
    artifact = read_artifact(artifact_path)
    tok_sha = file_sha256(tokenizer)
    check_tokenizer_matches(artifact.meta, tokenizer, tok_sha)
    recorded = recorded_eval(artifact.meta)
    seq_len = seq_len or recorded["seq_len"] or 1024
    seed = (recorded["seed"] or 0) if seed is None else seed
    samples = (recorded["samples"] or 1) if samples is None else samples
    if batch_tokens is None:  # the trainer's batch when scoring its windows: same batches, same draws
        same = seq_len == recorded["seq_len"] and recorded["batch_windows"] is not None
        batch_tokens = recorded["batch_windows"] * seq_len if same else DEFAULT_BATCH_TOKENS
    model = model_from_artifact(artifact.meta, artifact.state_dict)
    weight_bytes = sum(t.numel() * max(4, t.element_size()) for t in artifact.state_dict.values())
    batch_windows = limits.score_batch_windows(model.config, weight_bytes, seq_len, max(1, batch_tokens // seq_len))
    model.to(dev)
    sp = load_tokenizer(tokenizer)
    check_vocab(model, sp.vocab_size())
    table = build_byte_table(sp, model.vocab_size)
    tokens = load_val_tokens(find_shards(data, "val"), seq_len, max_tokens=max_tokens, vocab_size=sp.vocab_size())
    windows = val_windows(tokens, seq_len)
    result = evaluate(model, windows, table, batch_windows=batch_windows, device=dev,
                      autocast_dtype=eval_autocast_dtype(dev), progress=progress, seed=seed, samples=samples)
    limits.require_finite(f"{artifact_path}: val_bpb", result.val_bpb)
    report: dict[str, Any] = {
        "command": "score", "artifact": str(artifact_path), "bytes_model": artifact.nbytes,
        "variant": artifact.meta["model"]["variant"], "quant": artifact.rule,
        "compressor": artifact.compressor, "seq_len": seq_len, "device": dev.type,
        "tokens_per_s": result.tokens / max(result.seconds, 1e-9), **result.as_dict()}
    if audit:
        report["audit"] = dataclasses.asdict(audit_bytes(tokens, sp, table))
    return report
