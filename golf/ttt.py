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

`ScoreFirstGuard` proves the order on every run instead of trusting it: it sees every target
position just before it is scored and every stream range just before an update reads it, and
refuses (ScoreFirstViolation) a score of a position some update has read, an update reading a
target not yet scored, and a chunk whose targets were not each scored exactly once across ranks.

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

from golf.bpb import ByteTable
from golf.data import rank_slice
from golf.errors import GolfError
from golf.models.base import LanguageModel
from golf.score import ScoreResult, evaluate
from golf.sliding import EvalWindows


class ScoreFirstViolation(GolfError):
    """A token was (or was about to be) scored by weights that had trained on it."""


class ScoreFirstGuard:
    """Bookkeeping of which stream positions were scored and which ones updates have read.

    `scoring` and `reading` check each event against the state committed so far; `commit_scored`
    and `commit_trained` merge this rank's events with every other rank's (an all-reduce over the
    chunk's range), so the checks hold for the weights every rank shares.
    """

    def __init__(self, n_positions: int, device: torch.device) -> None:
        self.n = n_positions  # positions 0..n-1 of the stream; the scored targets lie in 1..n-1
        self.device = device
        self.scored = torch.zeros(n_positions, dtype=torch.bool)
        self.trained = torch.zeros(n_positions, dtype=torch.bool)
        self._scored_here = torch.zeros(n_positions, dtype=torch.int8)  # this rank, since the last commit
        self._scored_count = 0  # positions this rank scored since the last commit, wherever they were
        self._read_here: list[tuple[int, int]] = []
        self.checks = 0

    def scoring(self, positions: torch.Tensor) -> None:
        """Targets about to be scored: no update may have read any of them."""
        self.checks += 1
        seen = self.trained[positions]
        if bool(seen.any()):
            pos = int(positions[seen.nonzero()[0, 0]])
            raise ScoreFirstViolation(f"score-first TTT violated: target position {pos} is about to be scored by "
                                      "weights that were trained on it")
        self._scored_here[positions] += 1
        self._scored_count += positions.numel()

    def reading(self, a: int, b: int) -> None:
        """An update is about to read stream positions [a, b): each target among them must be scored."""
        self.checks += 1
        targets = self.scored[max(a, 1):min(b, self.n)]
        if not bool(targets.all()):
            pos = max(a, 1) + int((~targets).nonzero()[0, 0])
            raise ScoreFirstViolation(f"score-first TTT violated: an update reads position {pos}, a target that "
                                      "has not been scored yet")
        self._read_here.append((a, b))

    def commit_scored(self, a: int, b: int) -> None:
        """The score phase of targets [a, b) is over on every rank: each was scored exactly once."""
        counts = self._scored_here[a:b].to(self.device, torch.int32)
        stray = self._scored_count - int(counts.sum())  # scored outside [a, b); counted, not searched for
        if _distributed():
            dist.all_reduce(counts)
        counts = counts.cpu()
        if stray or not bool((counts == 1).all()):
            bad = int((counts != 1).nonzero()[0, 0]) + a if not bool((counts == 1).all()) else -1
            raise ScoreFirstViolation(f"score-first TTT: targets {a}..{b - 1} were not each scored exactly once "
                                      f"(position {bad}, {stray} stray scores outside the chunk)")
        self.scored[a:b] = True
        self._scored_here[a:b] = 0
        self._scored_count = 0

    def commit_trained(self) -> None:
        """The updates of a chunk are over on every rank: what any rank read, every weight has seen."""
        lo = min((a for a, _ in self._read_here), default=self.n)
        hi = max((b for _, b in self._read_here), default=0)
        span = torch.tensor([-lo, hi], device=self.device)
        if _distributed():
            dist.all_reduce(span, op=dist.ReduceOp.MAX)
        lo, hi = -int(span[0]), int(span[1])
        if hi <= lo:
            return
        read = torch.zeros(hi - lo, dtype=torch.int32)
        for a, b in self._read_here:
            read[a - lo:b - lo] = 1
        read = read.to(self.device)
        if _distributed():
            dist.all_reduce(read, op=dist.ReduceOp.MAX)
        self.trained[lo:hi] |= read.cpu().bool()
        self._read_here.clear()

    def summary(self) -> dict[str, Any]:
        """What the guard saw; a run that reaches this point broke no rule (a violation raises)."""
        return {"targets_scored": int(self.scored.sum()), "positions_trained": int(self.trained.sum()),
                "checks": self.checks, "verified": True}


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


@dataclasses.dataclass(frozen=True)
class TTTConfig:
    """Knobs of score-first TTT (trainer: TTT_*; golf score: --ttt-*). Defaults: the records' common ones."""

    chunk_tokens: int = 32_768  # scored targets per chunk (rounded to whole eval windows)
    epochs: int = 3  # passes over each chunk after scoring it
    lr: float = 0.002  # SGD learning rate at the first chunk; cosine to 0 at the last
    momentum: float = 0.9
    batch_seqs: int = 32  # training windows per update (all ranks together)
    grad_clip: float = 1.0  # max global gradient norm; 0 = none

    def __post_init__(self) -> None:
        problems = [f"{name} must be > 0, got {value}" for name, value in
                    (("chunk_tokens", self.chunk_tokens), ("batch_seqs", self.batch_seqs)) if value <= 0]
        problems += [f"{name} must be >= 0, got {value}" for name, value in
                     (("epochs", self.epochs), ("lr", self.lr), ("momentum", self.momentum),
                      ("grad_clip", self.grad_clip)) if value < 0]
        if problems:
            raise GolfError("TTT: " + "; ".join(problems))

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

    def as_dict(self) -> dict[str, Any]:
        return {**self.score.as_dict(), "ttt_chunks": self.chunks, "ttt_updates": self.updates,
                "ttt_score_seconds": round(self.score_seconds, 3), "ttt_train_seconds": round(self.train_seconds, 3),
                "score_first": self.guard}


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
            if world_size > 1 and _distributed():
                sum_over_ranks(params)
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            optimizer.step()
            updates += 1
    model.eval()
    return updates


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
