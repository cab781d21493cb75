"""Score-first test-time training (TTT): adapt the weights on val tokens only after scoring them.

The val stream is cut into chunks of whole eval windows (about `chunk_tokens` scored targets
each). Chunk c is scored with the current weights, exactly as `golf.score.evaluate` scores any
windows; then every weight is trained on chunk c's targets (SGD with momentum, `epochs` passes,
a cosine learning rate over the chunks), and chunk c + 1 is scored with the updated weights. The
last chunk is scored and never trained on. This is the "legal TTT" of the records
(openai/parameter-golf #1017's conditions): each token is predicted from earlier tokens only,
by a normalized distribution, scored before any update has used it, in one left-to-right pass.
The score keeps the model's label: an exact chain rule stays exact, since the weights that score
chunk c are a function of chunks before it only.

`golf.scorefirst.ScoreFirstGuard` proves the order on every run instead of trusting it.
Document-isolated TTT (per-document LoRA, global SGD phases over document prefixes) is
golf.doc_ttt; both take their knobs from one TTTConfig.

Under DDP each rank scores its share of a chunk's windows and trains on its share of every
batch; gradients are summed over ranks, so the updates (and the score) are the single-process
ones up to float summation order.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from typing import Any

import torch
import torch.distributed as dist
from tqdm import tqdm

from golf import limits
from golf.bpb import ByteTable
from golf.data import rank_slice
from golf.errors import GolfError
from golf.lora import TARGETS as LORA_TARGETS
from golf.models.base import LanguageModel
from golf.scorefirst import ScoreFirstGuard, distributed
from golf.score import ScoreResult, evaluate
from golf.sliding import EvalWindows


@dataclasses.dataclass(frozen=True)
class TTTConfig:
    """Knobs of score-first TTT (trainer: TTT_*; golf score: --ttt-*). Defaults: the records' common ones.

    mode "stream" trains every weight on chunks of the val stream (this module); mode "docs"
    scores each document alone (golf.doc_ttt), the eval stride's worth of targets at a time, with
    a per-document LoRA (`lora_*`, 0 = none) and global SGD phases over document prefixes
    (`prefix_docs`, `phases`; the SGD knobs above them are the phases' knobs)."""

    chunk_tokens: int = 32_768  # stream: scored targets per chunk (rounded to whole eval windows)
    epochs: int = 3  # passes over each chunk (stream) or each phase's documents (docs) after scoring them
    lr: float = 0.002  # SGD learning rate at the first chunk or phase; cosine to 0 at the last
    momentum: float = 0.9
    batch_seqs: int = 32  # training windows per update (all ranks together)
    grad_clip: float = 1.0  # max global gradient norm; 0 = none
    mode: str = "stream"  # "stream" or "docs"
    doc_batch: int = 64  # docs: documents scored side by side, each with its own LoRA
    lora_rank: int = 8  # docs: rank of the per-document adapters; 0 = no LoRA
    lora_lr: float = 0.01  # docs: AdamW learning rate of the adapters, one step per chunk
    lora_targets: str = "q,v"  # docs: what is adapted besides the head (golf.lora.TARGETS: q, k, v, o, mlp)
    lora_beta1: float = 0.9  # docs: the adapters' AdamW betas and decoupled weight decay
    lora_beta2: float = 0.95
    lora_wd: float = 0.0
    prefix_docs: int = 0  # docs: global SGD after the first N documents are scored; 0 = no phases
    phases: int = 1  # docs: the prefix is cut into this many phases, each trained on once it is scored

    def __post_init__(self) -> None:
        # The knobs may come from an artifact's manifest (meta.eval.ttt): types first, then ranges.
        wrong = [f"{f.name} must be a {type(f.default).__name__}, got {str(getattr(self, f.name))[:40]!r}"
                 for f in dataclasses.fields(self) if not limits.kind_ok(f.default, getattr(self, f.name))]
        if wrong:
            raise GolfError("TTT: " + "; ".join(wrong))
        problems = [f"{name} must be at most {most:,}, got {value:,}" for name, value, most in
                    (("epochs", self.epochs, limits.MAX_TTT_EPOCHS), ("phases", self.phases, limits.MAX_TTT_PHASES),
                     ("doc_batch", self.doc_batch, limits.MAX_TTT_DOC_BATCH)) if value > most]
        problems += [f"{name} must be > 0, got {value}" for name, value in
                    (("chunk_tokens", self.chunk_tokens), ("batch_seqs", self.batch_seqs),
                     ("doc_batch", self.doc_batch), ("phases", self.phases))
                    if value <= 0]
        problems += [f"{name} must be >= 0, got {value}" for name, value in
                     (("epochs", self.epochs), ("lr", self.lr), ("momentum", self.momentum),
                      ("grad_clip", self.grad_clip), ("lora_rank", self.lora_rank), ("lora_lr", self.lora_lr),
                      ("prefix_docs", self.prefix_docs)) if value < 0]
        problems += [f"{name} must be in [0, 1), got {value}" for name, value in
                     (("lora_beta1", self.lora_beta1), ("lora_beta2", self.lora_beta2)) if not 0 <= value < 1]
        if self.lora_wd < 0:
            problems.append(f"lora_wd must be >= 0, got {self.lora_wd}")
        targets = self.lora_target_names
        if not targets or len(set(targets)) != len(targets) or not set(targets) <= set(LORA_TARGETS):
            problems.append(f"lora_targets must be distinct names from {','.join(LORA_TARGETS)} joined by commas, "
                            f"got {self.lora_targets[:40]!r}")
        if self.mode not in ("stream", "docs"):
            problems.append(f"mode must be 'stream' or 'docs', got {self.mode!r}")
        if problems:
            raise GolfError("TTT: " + "; ".join(problems))

    @property
    def lora_target_names(self) -> tuple[str, ...]:
        return tuple(t.strip() for t in self.lora_targets.split(",")) if self.lora_targets.strip() else ()

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class TTTResult:
    score: ScoreResult  # the score of every target, each chunk with the weights of its time
    chunks: int
    updates: int
    score_seconds: float
    train_seconds: float
    guard: dict[str, Any]
    documents: int | None = None  # docs mode: documents scored (each alone)
    # docs mode: the bpb of each phase's documents, then of the documents after the prefix (if any)
    phase_bpb: list[float] | None = None
    longest_document: int | None = None  # docs mode: targets of the longest document (its chunks run in sequence)

    def as_dict(self) -> dict[str, Any]:
        extra = {} if self.documents is None else {"ttt_documents": self.documents, "ttt_phase_bpb": self.phase_bpb,
                                                   "ttt_longest_document": self.longest_document}
        return {**self.score.as_dict(), "ttt_chunks": self.chunks, "ttt_updates": self.updates,
                "ttt_score_seconds": round(self.score_seconds, 3), "ttt_train_seconds": round(self.train_seconds, 3),
                **extra, "score_first": self.guard}


def chunk_target_range(chunk: EvalWindows) -> tuple[int, int]:
    """[a, b): the stream positions of the targets a chunk of windows scores."""
    a = int(chunk.starts[0]) + 1 + int(chunk.first[0])
    return a, int(chunk.starts[-1]) + chunk.length + 1


def training_starts(a: int, b: int, length: int) -> tuple[torch.Tensor, int]:
    """Starts of windows of `length` (shorter if the chunk is) training targets [a, b): back to back
    from a - 1, the last one moved left to end at b."""
    length = min(length, b - a)
    starts = torch.arange(a - 1, b - 1 - length + 1, length)
    if int(starts[-1]) + length < b - 1:
        starts = torch.cat((starts, torch.tensor([b - 1 - length])))
    return starts, length


def train_on_chunk(model: LanguageModel, optimizer: torch.optim.Optimizer, stream: torch.Tensor,
                   a: int, b: int, length: int, config: TTTConfig, lr: float, guard: ScoreFirstGuard, *,
                   device: torch.device, rank: int, world_size: int, autocast_dtype: torch.dtype | None) -> int:
    """`config.epochs` passes of SGD over targets [a, b) of `stream`; returns the number of updates."""
    starts, length = training_starts(a, b, length)
    for group in optimizer.param_groups:
        group["lr"] = lr
    params = [p for p in model.parameters() if p.requires_grad]
    offsets = torch.arange(length + 1)
    updates = 0
    model.train()
    for _ in range(config.epochs):
        for lo in range(0, starts.numel(), config.batch_seqs):
            batch = starts[lo:lo + config.batch_seqs]
            share = rank_slice(batch.numel(), rank, world_size)
            mine = batch[share.start:share.stop]
            optimizer.zero_grad(set_to_none=False)
            if mine.numel():
                guard.reading(int(mine[0]), int(mine[-1]) + length + 1)
                rows = stream[mine[:, None] + offsets].to(device, non_blocking=True)
                with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                    loss = model.loss(rows)
                (loss * (mine.numel() / batch.numel())).backward()  # the mean over the whole batch
            shared_step(optimizer, params, config, world_size)
            updates += 1
    model.eval()
    return updates


def shared_step(optimizer: torch.optim.Optimizer, params: list[torch.nn.Parameter], config: TTTConfig,
                world_size: int) -> None:
    """One update of weights every rank shares: gradients summed over ranks, clipped, stepped."""
    if world_size > 1 and distributed():
        sum_over_ranks(params)
    if config.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
    optimizer.step()


def sum_over_ranks(params: list[torch.nn.Parameter]) -> None:
    """Sum every gradient over the ranks in one all-reduce (a rank with no rows adds zeros)."""
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.flatten() for g in grads])
    dist.all_reduce(flat)
    for p, g in zip(params, flat.split([g.numel() for g in grads])):
        p.grad = g.view_as(p)


def score_first_ttt(model: LanguageModel, windows: EvalWindows, table: ByteTable, config: TTTConfig, *,
                    batch_windows: int, device: torch.device, rank: int = 0, world_size: int = 1,
                    autocast_dtype: torch.dtype | None = None, progress: bool = False, seed: int = 0,
                    samples: int = 1) -> TTTResult:
    """Score `windows` chunk by chunk, training a copy of `model` on each chunk after scoring it."""
    if not windows.on_stream or not len(windows):
        raise GolfError("score-first TTT needs eval windows over a token stream (golf.sliding.sliding_windows)")
    start = time.perf_counter()
    model = copy.deepcopy(model)  # the caller's weights stay as they were
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum)
    per_chunk = max(1, config.chunk_tokens // windows.stride)
    n_chunks = math.ceil(len(windows) / per_chunk)
    guard = ScoreFirstGuard(windows.source.numel(), device)
    sums = [0.0, 0, 0, 0.0]  # nats, tokens, bytes, variance
    labels: set[str] = set()
    updates, score_s, train_s = 0, 0.0, 0.0
    bar = tqdm(range(n_chunks), desc="ttt", unit="chunk", disable=not progress or rank != 0 or None, leave=False)
    for c in bar:
        chunk = windows[c * per_chunk:(c + 1) * per_chunk]
        t0 = time.perf_counter()
        part = evaluate(model, chunk, table, batch_windows=batch_windows, device=device, rank=rank,
                        world_size=world_size, autocast_dtype=autocast_dtype, seed=seed, samples=samples,
                        guard=guard)
        a, b = chunk_target_range(chunk)
        guard.commit_scored(a, b)
        score_s += time.perf_counter() - t0
        labels.add(part.label)
        sums[0] += part.nats_sum
        sums[1] += part.tokens
        sums[2] += part.bytes
        sums[3] += (part.nats_stderr or 0.0) ** 2
        bar.set_postfix(val_bpb=f"{sums[0] / math.log(2) / max(sums[2], 1):.5f}", refresh=False)
        if c == n_chunks - 1 or config.epochs == 0:
            continue
        t0 = time.perf_counter()
        lr = config.lr * 0.5 * (1 + math.cos(math.pi * c / max(n_chunks - 1, 1)))
        updates += train_on_chunk(model, optimizer, windows.source, a, b, windows.length, config, lr, guard,
                                  device=device, rank=rank, world_size=world_size, autocast_dtype=autocast_dtype)
        guard.commit_trained()
        train_s += time.perf_counter() - t0
    if len(labels) > 1:
        raise RuntimeError(f"model returned mixed score labels {sorted(labels)}")
    label = labels.pop()
    score = ScoreResult(nats_sum=sums[0], tokens=sums[1], bytes=sums[2], label=label,
                        seconds=time.perf_counter() - start, nats_stderr=math.sqrt(sums[3]) if label == "bound" else None,
                        seed=seed, samples=samples)
    return TTTResult(score, n_chunks, updates, score_s, train_s, guard.summary())
