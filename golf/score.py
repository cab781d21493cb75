"""Score a model on the validation split: summed nats, exact byte counts, bpb and its label.

One function does the evaluation for the trainer's periodic and final validation and for
`golf score`, so the two can never disagree by construction. Windows are the baseline's
non-overlapping `seq_len` blocks; ranks take contiguous shares and sum nats, tokens and bytes
in float64 with one all-reduce.
"""

from __future__ import annotations

import dataclasses
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


@dataclasses.dataclass
class ScoreResult:
    nats_sum: float
    tokens: int
    bytes: int
    label: str  # "exact" or "bound"
    seconds: float
    # Standard error of nats_sum for Monte Carlo bounds; None for exact scores.
    nats_stderr: float | None = None

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
                "val_bpb_stderr": self.bpb_stderr,
                "implied_bytes_per_token": self.bytes / self.tokens}


@torch.inference_mode()
def evaluate(model: LanguageModel, windows: torch.Tensor, table: ByteTable, *,
             batch_windows: int, device: torch.device, rank: int = 0, world_size: int = 1,
             autocast_dtype: torch.dtype | None = None, progress: bool = False) -> ScoreResult:
    """Sum per-token nats and target bytes over `windows` [N, T+1] (this rank's share)."""
    start = time.perf_counter()
    was_training = model.training
    model.eval()
    table = table.to(device)
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # nats, tokens, bytes, variance
    labels: set[str] = set()
    share = rank_slice(windows.size(0), rank, world_size)
    autocast = (torch.autocast(device_type=device.type, dtype=autocast_dtype)
                if autocast_dtype is not None else nullcontext())
    batches = range(share.start, share.stop, batch_windows)
    for lo in tqdm(batches, desc="score", unit="batch", disable=not progress or None, leave=False):
        batch = windows[lo:min(lo + batch_windows, share.stop)].to(device, non_blocking=True)
        with autocast:
            out = model.score(batch)
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
                       nats_stderr=math.sqrt(variance) if label == "bound" else None)


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


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise GolfError("--device cuda requested but CUDA is not available")
    if name not in ("cpu", "cuda"):
        raise GolfError(f"--device must be auto, cpu or cuda, not {name!r}")
    return torch.device(name)


def recorded_seq_len(meta: dict[str, Any]) -> int:
    """The eval window length the artifact records (the run's TRAIN_SEQ_LEN); 1024 if it records none."""
    recorded = meta.get("eval")
    value = recorded.get("seq_len", 1024) if isinstance(recorded, dict) else 1024
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        raise GolfError(f"artifact manifest: eval.seq_len {str(value)[:40]!r} is not a positive integer")
    return value


def score_artifact(artifact_path: Path, *, data: Path, tokenizer: Path, max_tokens: int | None = None,
                   seq_len: int | None = None, batch_tokens: int = 65_536, device: str = "auto",
                   audit: bool = False, progress: bool = True) -> dict[str, Any]:
    """Rebuild the model from the artifact alone and score it on the val shards under `data`."""
    for flag, value in (("--max-tokens", max_tokens), ("--seq-len", seq_len), ("--batch-tokens", batch_tokens)):
        if value is not None and value < 1:
            raise GolfError(f"{flag} must be a positive number of tokens, got {value}")
    dev = resolve_device(device)
    artifact = read_artifact(artifact_path)
    tok_sha = file_sha256(tokenizer)
    check_tokenizer_matches(artifact.meta, tokenizer, tok_sha)
    seq_len = seq_len or recorded_seq_len(artifact.meta)
    model = model_from_artifact(artifact.meta, artifact.state_dict)
    weight_bytes = sum(t.numel() * max(4, t.element_size()) for t in artifact.state_dict.values())
    batch_windows = limits.score_batch_windows(model.config, weight_bytes, seq_len, max(1, batch_tokens // seq_len))
    model.to(dev)
    vocab = model.config.vocab_size
    sp = load_tokenizer(tokenizer)
    table = build_byte_table(sp, vocab)
    tokens = load_val_tokens(find_shards(data, "val"), seq_len, max_tokens=max_tokens, vocab_size=vocab)
    windows = val_windows(tokens, seq_len)
    result = evaluate(model, windows, table, batch_windows=batch_windows, device=dev,
                      autocast_dtype=eval_autocast_dtype(dev), progress=progress)
    limits.require_finite(f"{artifact_path}: val_bpb", result.val_bpb)
    report: dict[str, Any] = {
        "command": "score", "artifact": str(artifact_path), "bytes_model": artifact.nbytes,
        "variant": artifact.meta["model"]["variant"], "quant": artifact.rule,
        "compressor": artifact.compressor, "seq_len": seq_len, "device": dev.type,
        "tokens_per_s": result.tokens / max(result.seconds, 1e-9), **result.as_dict()}
    if audit:
        report["audit"] = dataclasses.asdict(audit_bytes(tokens, sp, table))
    return report
