"""The score-first check: no token's score used weights that had seen it, proven on every run.

Score-first TTT (golf.ttt, golf.doc_ttt) may train on val tokens only after scoring them. Rather
than trust the loop's order, `ScoreFirstGuard` sees every target position just before it is
scored and every stream range just before an update reads it, and refuses (ScoreFirstViolation):
- a score of a position some update of the scoring weights has read;
- an update reading a target not yet scored;
- a scored range whose targets were not each scored exactly once across ranks.

Two kinds of weights are tracked. The shared weights (every rank's model, trained by global
SGD) remember everything an update read, merged over ranks at `commit_trained`. A per-row
adapter (document LoRA, golf.lora) is a slot: its reads count against scores through that slot
only, and `reset_slot` forgets them, since the reset adapter holds nothing of what it saw.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from golf.errors import GolfError


class ScoreFirstViolation(GolfError):
    """A token was (or was about to be) scored by weights that had trained on it."""


def distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


class ScoreFirstGuard:
    """Bookkeeping of which stream positions were scored and which ones updates have read.

    `scoring` and `reading` check each event against the state so far; `commit_scored` and
    `commit_trained` merge this rank's events with every other rank's (all-reduces), so the
    checks hold for the weights every rank shares.
    """

    def __init__(self, n_positions: int, device: torch.device) -> None:
        self.n = n_positions  # positions 0..n-1 of the stream; the scored targets lie in 1..n-1
        self.device = device
        self.scored = torch.zeros(n_positions, dtype=torch.bool)  # committed, all ranks
        self.trained = torch.zeros(n_positions, dtype=torch.bool)  # read by updates of the shared weights
        # this rank, since the last commit (an int8 wraps past 127 scores of a position; the total count catches it)
        self._scored_here = torch.zeros(n_positions, dtype=torch.int8)
        self._scored_count = 0  # positions this rank scored since the last commit, wherever they were
        self._read_here: list[tuple[int, int]] = []
        self._slot_reads: dict[int, list[tuple[int, int]]] = {}  # adapter slot -> ranges read since its reset
        self.adapter_reads = 0  # positions adapter updates read, all slots and resets (this rank)
        self.checks = 0

    def scoring(self, positions: torch.Tensor, slot: int | None = None) -> None:
        """Targets about to be scored (through adapter `slot`, if any): no update of the weights that
        score them may have read any of them."""
        self.checks += 1
        seen = self.trained[positions]
        for a, b in self._slot_reads.get(slot, []) if slot is not None else []:
            seen = seen | ((positions >= a) & (positions < b))
        if bool(seen.any()):
            pos = int(positions[seen.nonzero()[0, 0]])
            raise ScoreFirstViolation(f"score-first TTT violated: target position {pos} is about to be scored by "
                                      "weights that were trained on it")
        self._scored_here[positions] += 1
        self._scored_count += positions.numel()

    def reading(self, a: int, b: int, slot: int | None = None) -> None:
        """An update (of adapter `slot`, or of the shared weights) is about to read stream positions
        [a, b): position a is an input only; each target a+1..b-1 must have been scored already."""
        self.checks += 1
        lo, hi = max(a + 1, 1), min(b, self.n)
        targets = self.scored[lo:hi] | (self._scored_here[lo:hi] > 0)
        if not bool(targets.all()):
            pos = lo + int((~targets).nonzero()[0, 0])
            raise ScoreFirstViolation(f"score-first TTT violated: an update reads position {pos}, a target that "
                                      "has not been scored yet")
        if slot is None:
            self._read_here.append((a, b))
        else:
            self._merge_slot_read(slot, a, b)
            self.adapter_reads += b - a

    def _merge_slot_read(self, slot: int, a: int, b: int) -> None:
        """Add [a, b) to the slot's reads, merged with a range it overlaps or touches: a document's
        chunk windows overlap, so its adapter's reads stay one range and each check costs O(1)."""
        reads = self._slot_reads.setdefault(slot, [])
        for i, (lo, hi) in enumerate(reads):
            if a <= hi and lo <= b:
                reads[i] = (min(a, lo), max(b, hi))
                return
        reads.append((a, b))

    def reset_slot(self, slot: int) -> None:
        """Adapter `slot` was reset: it has seen nothing."""
        self._slot_reads.pop(slot, None)

    def commit_scored(self, a: int, b: int, expected: torch.Tensor | None = None) -> None:
        """The score phase of targets [a, b) is over on every rank: each was scored exactly once (or,
        with `expected` (bool [b - a]), each expected one exactly once and no other one)."""
        here = self._scored_here[a:b].to(torch.int32)
        stray = self._scored_count - int(here.sum())  # scored outside [a, b); counted, not searched for
        counts = torch.cat((here, torch.tensor([stray], dtype=torch.int32))).to(self.device)
        if distributed():
            dist.all_reduce(counts)  # the stray count rides along, so every rank refuses together
        counts = counts.cpu()
        counts, stray = counts[:-1], int(counts[-1])
        want = torch.ones_like(counts) if expected is None else expected.to(torch.int32)
        wrong = counts != want
        if stray or bool(wrong.any()):
            bad = int(wrong.nonzero()[0, 0]) + a if bool(wrong.any()) else -1
            raise ScoreFirstViolation(f"score-first TTT: targets {a}..{b - 1} were not each scored exactly once "
                                      f"(position {bad}, {stray} stray scores outside the range)")
        self.scored[a:b] |= want.bool()
        self._scored_here[a:b] = 0
        self._scored_count = 0

    def commit_trained(self) -> None:
        """The updates of the shared weights are over on every rank: what any rank read, they have seen."""
        lo = min((a for a, _ in self._read_here), default=self.n)
        hi = max((b for _, b in self._read_here), default=0)
        span = torch.tensor([-lo, hi], device=self.device)
        if distributed():
            dist.all_reduce(span, op=dist.ReduceOp.MAX)
        lo, hi = -int(span[0]), int(span[1])
        if hi <= lo:
            return
        read = torch.zeros(hi - lo, dtype=torch.int32)
        for a, b in self._read_here:
            read[a - lo:b - lo] = 1
        read = read.to(self.device)
        if distributed():
            dist.all_reduce(read, op=dist.ReduceOp.MAX)
        self.trained[lo:hi] |= read.cpu().bool()
        self._read_here.clear()

    def summary(self) -> dict[str, Any]:
        """What the guard saw; a run that reaches this point broke no rule (a violation raises)."""
        return {"targets_scored": int(self.scored.sum()), "positions_trained": int(self.trained.sum()),
                "adapter_positions_read": self.adapter_reads, "checks": self.checks, "verified": True}
