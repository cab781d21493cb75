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

from golf import limits, models
from golf.bpb import (
    ByteTable,
    audit_bytes,
    bits_per_byte,
    load_tokenizer,
    scoring_table,
)
from golf.clocks import EvalClock
from golf.data import find_shards, load_val_tokens, rank_slice
from golf.embedded import file_sha256
from golf.errors import GolfError
from golf.models.base import LanguageModel
from golf.precision import eval_autocast, resolve_precision
from golf.sidecar import audit_sidecar, load_sidecar
from golf.sliding import EvalWindows, as_windows, require_causal_exact
from quant import read_artifact

if TYPE_CHECKING:
    from golf.scorefirst import ScoreFirstGuard

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
    passes: int | None = None  # forward passes per window, when the model counts them (its cost)

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
                "forward_passes_per_window": self.passes,
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
    passes: set[int | None] = set()
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
        passes.add(out.passes)
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
                       nats_stderr=math.sqrt(variance) if label == "bound" else None, seed=seed, samples=samples,
                       passes=max((p for p in passes if p is not None), default=None))


def eval_autocast_dtype(device: torch.device) -> torch.dtype | None:
    """bf16 on GPU, as the official eval; fp32 on CPU: the default PRECISION's (golf.precision), so
    `golf score` computes the trainer's final roundtrip number on the same device."""
    return eval_autocast(resolve_precision("auto", device))


def model_from_artifact(meta: dict[str, Any], state_dict: dict[str, torch.Tensor],
                        options: dict[str, Any] | None = None) -> LanguageModel:
    """Rebuild a model from an artifact's manifest and decoded tensors alone. `options` replace
    config fields that change how the model scores, not its tensors (MDLM's `mdlm_score`, say).

    The config is type- and range-checked and its shapes compared with the tensors present on the
    meta device first, so a hostile manifest can neither allocate nor crash the build.
    """
    spec = meta.get("model")
    if not isinstance(spec, dict):
        raise GolfError("artifact manifest has no model description (meta.model)")
    values = spec.get("config")
    if options:
        unknown = sorted(set(options) - set(values if isinstance(values, dict) else {}))
        if unknown:
            raise GolfError(f"model {str(spec.get('variant'))[:40]!r} has no option {', '.join(unknown)}")
        values = {**values, **options}
    config = limits.config_from_manifest(spec.get("variant"), values)
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


def check_scorable(model: LanguageModel, windows: torch.Tensor | EvalWindows, *, device: torch.device, seed: int,
                   samples: int) -> None:
    """Score the first window now, so a model that cannot be scored as configured (a Monte Carlo
    bound asked for too few samples, a block size the length does not divide) fails before training
    rather than after it."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            row = as_windows(windows).rows(0, 1)  # a whole window: a family may need its full length
            model.score(row.to(device), generator=batch_generator(seed, 0, device), samples=samples)
    finally:
        model.train(was_training)


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
                   seq_len: int | None = None, stride: int | None = None, batch_tokens: int | None = None,
                   device: str = "auto", audit: bool = False, progress: bool = True, seed: int | None = None,
                   samples: int | None = None, ttt: bool | None = None,
                   ttt_overrides: dict[str, Any] | None = None, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Rebuild the model from the artifact alone and score it on the val shards under `data`.

    By default the evaluation the trainer recorded in the artifact (eval length, stride, TTT) and,
    for Monte Carlo models (a `bound`; exact models ignore them), its `seed` and `samples`, so
    its number is reproduced; each can be set. Bytes come from the val shards' byte sidecars when
    they have them (golf.sidecar), else from the tokenizer's byte table. The eval clock runs from
    reading the artifact to the last score. `options` replace score-time config fields of the model
    (see `model_from_artifact`)."""
    from golf.evalplan import headline, plan_from_meta, run_plan

    for flag, value in (("--max-tokens", max_tokens), ("--seq-len", seq_len), ("--batch-tokens", batch_tokens),
                        ("--samples", samples)):
        if value is not None and value < 1:
            raise GolfError(f"{flag} must be a positive number, got {value}")
    dev = resolve_device(device)
    clock = EvalClock(sync=torch.cuda.synchronize if dev.type == "cuda" else lambda: None)
    with clock.phase("read"):
        artifact = read_artifact(artifact_path)
    tok_sha = file_sha256(tokenizer)
    check_tokenizer_matches(artifact.meta, tokenizer, tok_sha)
    recorded = recorded_eval(artifact.meta)
    with clock.phase("build"):
        model = model_from_artifact(artifact.meta, artifact.state_dict, options)
        weight_bytes = sum(t.numel() * max(4, t.element_size()) for t in artifact.state_dict.values())
        model.to(dev)
    sp = load_tokenizer(tokenizer)
    check_vocab(model, sp.vocab_size())
    plan = plan_from_meta(artifact.meta.get("eval", {}), length=seq_len, stride=stride, ttt=ttt,
                          ttt_overrides=ttt_overrides)
    seed = (recorded["seed"] or 0) if seed is None else seed
    samples = (recorded["samples"] or 1) if samples is None else samples
    if batch_tokens is None:  # the trainer's batch when scoring its windows: same batches, same draws
        same = plan.length == recorded["seq_len"] and recorded["batch_windows"] is not None
        batch_tokens = recorded["batch_windows"] * plan.length if same else default_batch_tokens(dev)
    batch_windows = limits.score_batch_windows(model.config, weight_bytes, plan.length,
                                               max(1, batch_tokens // plan.length))
    val_files = find_shards(data, "val")
    tokens = load_val_tokens(val_files, plan.length, max_tokens=max_tokens, vocab_size=sp.vocab_size())
    sidecar = load_sidecar(val_files, tokens.numel())
    table, rule_difference = scoring_table(sp, tokens, model.vocab_size)  # refuses <unk> among the targets
    with clock.phase(plan.name):
        outcome = run_plan(model, tokens, table, plan, sidecar=sidecar, batch_windows=batch_windows, device=dev,
                           autocast_dtype=eval_autocast_dtype(dev), progress=progress, seed=seed, samples=samples)
    result = headline(outcome)
    limits.require_finite(f"{artifact_path}: val_bpb", result.val_bpb)
    report: dict[str, Any] = {
        "command": "score", "artifact": str(artifact_path), "bytes_model": artifact.nbytes,
        "variant": artifact.meta["model"]["variant"], "quant": artifact.rule,
        "compressor": artifact.compressor, "seq_len": plan.length, "stride": plan.stride, "eval": plan.name,
        "ttt": None if plan.ttt is None else plan.ttt.as_dict(), "device": dev.type,
        "bytes_source": "sidecar" if sidecar is not None else "table", "options": options or {},
        "official_rule_bytes": rule_difference.official_rule_bytes if rule_difference else result.bytes,
        "byte_rule_note": rule_difference.note() if rule_difference else None,
        "tokens_per_s": result.tokens / max(result.seconds, 1e-9), **outcome.as_dict(), **clock.as_dict()}
    if audit:
        report["audit"] = dataclasses.asdict(audit_bytes(tokens, sp, table))
        if sidecar is not None:
            report["sidecar_audit"] = dataclasses.asdict(audit_sidecar(tokens, sidecar, sp, table))
    return report
