"""Score a model on the validation split: summed nats, exact byte counts, bpb and its label.

One function does the evaluation for the trainer's periodic and final validation and for
`golf score`, so the two can never disagree by construction. Windows are the baseline's
non-overlapping `seq_len` blocks or sliding windows (golf.sliding: each window scores only the
targets it is responsible for), cut into batches of `batch_windows` on one global grid; ranks
take contiguous shares of whole batches and sum nats, tokens and bytes in float64 with one
all-reduce, so every batch holds the same windows whatever the world size. Score-first TTT
(golf.ttt) scores its chunks through this function too.

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
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from tqdm import tqdm

from golf import models
from golf.bpb import (
    ByteTable,
    audit_bytes,
    bits_per_byte,
    build_byte_table,
    load_tokenizer,
    window_bytes,
)
from golf.clocks import EvalClock
from golf.data import find_shards, load_val_tokens, rank_slice
from golf.embedded import file_sha256
from golf.errors import GolfError
from golf.models.base import LanguageModel
from golf.sidecar import audit_sidecar, load_sidecar
from golf.sliding import EvalWindows, as_windows, require_causal_exact
from quant import read_artifact

if TYPE_CHECKING:
    from golf.ttt import ScoreFirstGuard

LN2 = math.log(2.0)
# Tokens per forward pass when nothing else says, per device, measured by bench/eval_batch.py
# (BENCHMARKS.md): on this CPU the smallest batch measured scored fastest, 1.6-1.7x the old 65,536
# default for the demo and the baseline shapes (a longer window than the batch still goes whole,
# one per pass). On GPU big batches fill the device; not measured here (no GPU), kept at 65,536.
DEFAULT_BATCH_TOKENS = {"cpu": 1_024, "cuda": 65_536}


def default_batch_tokens(device: torch.device) -> int:
    return DEFAULT_BATCH_TOKENS.get(device.type, DEFAULT_BATCH_TOKENS["cpu"])


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


@torch.no_grad()  # not inference_mode: tensors a model caches here (RoPE tables) may later meet autograd (TTT)
def evaluate(model: LanguageModel, windows: torch.Tensor | EvalWindows, table: ByteTable, *,
             batch_windows: int, device: torch.device, rank: int = 0, world_size: int = 1,
             autocast_dtype: torch.dtype | None = None, progress: bool = False, seed: int = 0,
             samples: int = 1, guard: ScoreFirstGuard | None = None) -> ScoreResult:
    """Sum per-target nats and bytes over `windows`: a block [N, T+1] whose every target is scored,
    or EvalWindows (golf.sliding: sliding windows, each scoring only the targets it is responsible for).

    `seed` and `samples` reach Monte Carlo models (see the module docstring); exact ones ignore them.
    `guard` (score-first TTT, golf.ttt) is told every target position before it is scored.
    """
    if samples < 1:
        raise GolfError(f"samples must be >= 1, got {samples}")
    start = time.perf_counter()
    wins = as_windows(windows)
    was_training = model.training
    model.eval()
    table = table.to(device)
    if wins.sliding and len(wins):  # every rank probes the same window, so all refuse together
        require_causal_exact(model, wins.rows(0, 1).to(device), what="sliding-window eval (stride < eval length)",
                             autocast_dtype=autocast_dtype, samples=samples)
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # nats, tokens, bytes, variance
    labels: set[str] = set()
    n_windows = len(wins)
    mine = rank_slice(math.ceil(n_windows / batch_windows), rank, world_size)
    autocast = (torch.autocast(device_type=device.type, dtype=autocast_dtype)
                if autocast_dtype is not None else nullcontext())
    batches = range(mine.start * batch_windows, min(mine.stop * batch_windows, n_windows), batch_windows)
    for lo in tqdm(batches, desc="score", unit="batch", disable=not progress or None, leave=False):
        hi = min(lo + batch_windows, n_windows)
        if guard is not None:
            guard.scoring(wins.target_positions(lo, hi))
        batch = wins.rows(lo, hi).to(device, non_blocking=True)
        with autocast:
            out = model.score(batch, generator=batch_generator(seed, wins.offset + lo, device), samples=samples)
        labels.add(out.label)
        n_bytes = wins.bytes(lo, hi, batch, table)
        keep = wins.scored(lo, hi)
        if keep is None:
            sums[0] += out.nats.double().sum()
            sums[1] += out.nats.numel()
            sums[2] += n_bytes.sum()
        else:
            keep = keep.to(device)
            sums[0] += out.nats.double()[keep].sum()
            sums[1] += keep.sum()
            sums[2] += n_bytes[keep].sum()
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
    """Rebuild a model from an artifact's manifest and decoded tensors alone."""
    try:
        spec = meta["model"]
        model = models.build(spec["variant"], spec["config"])
    except (KeyError, TypeError) as exc:
        raise GolfError(f"artifact manifest has no usable model description ({exc})") from None
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    if missing or unexpected:
        raise GolfError(f"artifact tensors do not match variant {spec['variant']!r}: "
                        f"missing {missing[:3]}, unexpected {unexpected[:3]}")
    return model


def check_tokenizer_matches(meta: dict[str, Any], tokenizer_path: Path, tokenizer_sha256: str) -> None:
    """Refuse to score with a tokenizer other than the one the model was trained with."""
    expected = meta.get("tokenizer", {}).get("sha256")
    if expected is None:
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


def score_artifact(artifact_path: Path, *, data: Path, tokenizer: Path, max_tokens: int | None = None,
                   seq_len: int | None = None, stride: int | None = None, batch_tokens: int | None = None,
                   device: str = "auto", audit: bool = False, progress: bool = True, seed: int | None = None,
                   samples: int | None = None, ttt: bool | None = None,
                   ttt_overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Rebuild the model from the artifact alone and score it on the val shards under `data`.

    By default the evaluation the trainer recorded in the artifact (eval length, stride, TTT) and,
    for Monte Carlo models (a `bound`; exact models ignore them), its `seed` and `samples`, so
    its number is reproduced; each can be set. Bytes come from the val shards' byte sidecars when
    they have them (golf.sidecar), else from the tokenizer's byte table. The eval clock runs from
    reading the artifact to the last score."""
    from golf.evalplan import headline, plan_from_meta, run_plan

    dev = resolve_device(device)
    clock = EvalClock(sync=torch.cuda.synchronize if dev.type == "cuda" else lambda: None)
    with clock.phase("read"):
        artifact = read_artifact(artifact_path)
    tok_sha = file_sha256(tokenizer)
    check_tokenizer_matches(artifact.meta, tokenizer, tok_sha)
    with clock.phase("build"):
        model = model_from_artifact(artifact.meta, artifact.state_dict)
        model.to(dev)
    sp = load_tokenizer(tokenizer)
    check_vocab(model, sp.vocab_size())
    table = build_byte_table(sp, model.vocab_size)
    recorded = artifact.meta.get("eval", {})
    plan = plan_from_meta(recorded, length=seq_len, stride=stride, ttt=ttt, ttt_overrides=ttt_overrides)
    seed = int(recorded.get("seed", 0)) if seed is None else seed
    samples = int(recorded.get("samples", 1)) if samples is None else samples
    if batch_tokens is None:  # the trainer's batch when scoring its windows: same batches, same draws
        same = plan.length == recorded.get("seq_len") and isinstance(recorded.get("batch_windows"), int)
        batch_tokens = recorded["batch_windows"] * plan.length if same else default_batch_tokens(dev)
    val_files = find_shards(data, "val")
    tokens = load_val_tokens(val_files, plan.length, max_tokens=max_tokens, vocab_size=sp.vocab_size())
    sidecar = load_sidecar(val_files, tokens.numel())
    with clock.phase(plan.name):
        outcome = run_plan(model, tokens, table, plan, sidecar=sidecar,
                           batch_windows=max(1, batch_tokens // plan.length), device=dev,
                           autocast_dtype=eval_autocast_dtype(dev), progress=progress, seed=seed, samples=samples)
    result = headline(outcome)
    report: dict[str, Any] = {
        "command": "score", "artifact": str(artifact_path), "bytes_model": artifact.nbytes,
        "variant": artifact.meta["model"]["variant"], "quant": artifact.rule,
        "compressor": artifact.compressor, "seq_len": plan.length, "stride": plan.stride, "eval": plan.name,
        "ttt": None if plan.ttt is None else plan.ttt.as_dict(), "device": dev.type,
        "bytes_source": "sidecar" if sidecar is not None else "table",
        "tokens_per_s": result.tokens / max(result.seconds, 1e-9), **outcome.as_dict(), **clock.as_dict()}
    if audit:
        report["audit"] = dataclasses.asdict(audit_bytes(tokens, sp, table))
        if sidecar is not None:
            report["sidecar_audit"] = dataclasses.asdict(audit_sidecar(tokens, sidecar, sp, table))
    return report
