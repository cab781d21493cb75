"""What a final evaluation runs: eval length, stride and score-first TTT, in one place.

The trainer's final score and `golf score` both run an EvalPlan through `run_plan`, and the
trainer records its plan in the artifact (meta `eval`), so `golf score ARTIFACT` reproduces the
trainer's headline number by default. The plan with stride = eval length = TRAIN_SEQ_LEN and no
TTT is the official baseline's evaluation. TTT mode "docs" (golf.doc_ttt) scores each document
alone, S = the stride targets at a time, with per-document LoRA and global SGD phases.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from golf.bpb import ByteTable
from golf.doc_ttt import score_documents
from golf.errors import GolfError
from golf.models.base import LanguageModel
from golf.score import ScoreResult, evaluate
from golf.sliding import sliding_windows
from golf.ttt import TTTConfig, TTTResult, score_first_ttt

DEFAULT_BOS_ID = 1  # the sp1024/sp8192 tokenizers' BOS, for a model whose config does not name one


@dataclasses.dataclass(frozen=True)
class EvalPlan:
    length: int  # eval window length L (EVAL_SEQ_LEN, golf score --eval-len)
    stride: int  # S: a new window every S tokens (EVAL_STRIDE, --stride); S = L: non-overlapping windows
    ttt: TTTConfig | None = None  # score-first test-time training, or none

    def __post_init__(self) -> None:
        if self.length < 1 or not 1 <= self.stride <= self.length:
            raise GolfError(f"eval length must be >= 1 and the stride between 1 and it; got eval length "
                            f"{self.length}, stride {self.stride}")

    @property
    def name(self) -> str:
        """The log tag of this evaluation, as records name theirs."""
        if self.ttt is not None:
            return "legal_ttt"
        return "sliding_window" if self.stride < self.length else "windows"

    def describe(self) -> str:
        ttt = "off" if self.ttt is None else " ".join(f"{k}={v}" for k, v in self.ttt.as_dict().items())
        return f"eval_seq_len:{self.length} eval_stride:{self.stride} ttt:{ttt}"

    def meta(self) -> dict[str, Any]:
        return {"seq_len": self.length, "stride": self.stride,
                "ttt": None if self.ttt is None else self.ttt.as_dict()}


def plan_from_meta(recorded: dict[str, Any], *, length: int | None = None, stride: int | None = None,
                   ttt: bool | None = None, ttt_overrides: dict[str, Any] | None = None) -> EvalPlan:
    """The artifact's recorded plan (meta `eval`), with what the caller sets on top.

    A length other than the recorded one without a stride means non-overlapping windows of it;
    `ttt` None keeps the recorded choice, and overrides switch TTT on."""
    recorded_len = recorded.get("seq_len", 1024)
    length = length or recorded_len
    if stride is None:
        stride = recorded.get("stride", length) if length == recorded_len else length
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (length, stride)):
        raise GolfError(f"artifact manifest: eval seq_len/stride {str(length)[:20]!r}/{str(stride)[:20]!r} are not "
                        "whole numbers")
    recorded_ttt = recorded.get("ttt")
    use_ttt = (bool(recorded_ttt) or bool(ttt_overrides)) if ttt is None else ttt
    config = None
    if use_ttt:
        base = recorded_ttt if isinstance(recorded_ttt, dict) else {}
        known = {f.name for f in dataclasses.fields(TTTConfig)}
        config = TTTConfig(**{k: v for k, v in {**base, **(ttt_overrides or {})}.items() if k in known})
    return EvalPlan(length, stride, config)


def run_plan(model: LanguageModel, tokens: torch.Tensor, table: ByteTable, plan: EvalPlan, *,
             batch_windows: int, device: torch.device, sidecar: torch.Tensor | None = None, rank: int = 0,
             world_size: int = 1, autocast_dtype: torch.dtype | None = None, progress: bool = False,
             seed: int = 0, samples: int = 1) -> ScoreResult | TTTResult:
    """Score the 1-D val stream `tokens` as `plan` says (bytes from `sidecar` when given)."""
    if plan.ttt is not None and plan.ttt.mode == "docs":
        return score_documents(model, tokens, table, plan.length, plan.stride, plan.ttt,
                               bos_id=int(getattr(model.config, "bos_id", DEFAULT_BOS_ID)), device=device, rank=rank,
                               world_size=world_size, autocast_dtype=autocast_dtype, progress=progress, sidecar=sidecar)
    windows = sliding_windows(tokens, plan.length, plan.stride, sidecar=sidecar)
    common = dict(batch_windows=batch_windows, device=device, rank=rank, world_size=world_size,
                  autocast_dtype=autocast_dtype, progress=progress, seed=seed, samples=samples)
    if plan.ttt is not None:
        return score_first_ttt(model, windows, table, plan.ttt, **common)
    return evaluate(model, windows, table, **common)


def headline(result: ScoreResult | TTTResult) -> ScoreResult:
    return result.score if isinstance(result, TTTResult) else result
