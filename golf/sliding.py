"""Eval windows: the baseline's non-overlapping blocks, or sliding windows every `stride` tokens.

A window of eval length L feeds the model L tokens and gets L per-target nats back. With stride
S < L, window k starts at k·S and is responsible only for the targets no earlier window scored:
all L for the first window, its last S for the others. So every target is scored exactly once,
with at least L − S tokens of left context (the non-overlapping windows give a token at the start
of a block none). Stride S = L gives the baseline's windows, row for row.

The scored targets are the same whatever the stride: targets 1..M of the val stream, M the
largest multiple of L that fits (the baseline truncates the same way), so a sliding bpb and a
plain one at the same L share their targets and their byte count. When L − S is not a multiple of
S the grid does not end at M; one more window, ending at M, scores the targets left over.

Sliding only makes sense for a causal, exact score: the nats of target t must depend on tokens
before t alone, so that dropping a window's first L − S targets leaves nothing of them behind. A
`bound` score (an ELBO of a bidirectional model) conditions every per-token term on the whole
masked window, future included; the last S terms of overlapping windows sum to no bound on
anything, so `require_causal_exact` refuses those models for stride < L (their plain windows
remain a valid bound). For exact models the same function checks causality on one window.

Byte counts come from the tokenizer's byte table, or from a per-token byte sidecar aligned with
the stream (golf.sidecar) when the val shards carry one.
"""

from __future__ import annotations

import dataclasses

import torch

from golf.bpb import ByteTable, window_bytes
from golf.data import usable_tokens
from golf.errors import GolfError
from golf.models.base import LanguageModel


@dataclasses.dataclass(frozen=True, eq=False)  # eq=False: tensor fields
class EvalWindows:
    """Windows [L + 1 tokens] over a source, and which of their L targets each one scores.

    `source` is either a 1-D token stream (window k reads source[starts[k] : starts[k] + L + 1]) or
    a 2-D block of rows (window k is row starts[k]). Window k scores its targets first[k]..L-1.
    `offset` is the index of window 0 in the grid it was cut from (Monte Carlo draws are seeded by
    the global window index, so a slice draws what the whole would).
    """

    source: torch.Tensor
    length: int
    stride: int
    starts: torch.Tensor  # int64 [K]
    first: torch.Tensor  # int64 [K]
    offset: int = 0
    sidecar: torch.Tensor | None = None  # bytes credited to each stream position (golf.sidecar), or None

    def __len__(self) -> int:
        return self.starts.numel()

    @property
    def sliding(self) -> bool:
        return bool(self.first.numel()) and int(self.first.max()) > 0

    @property
    def targets(self) -> int:
        return int((self.length - self.first).sum())

    @property
    def on_stream(self) -> bool:
        return self.source.dim() == 1

    def __getitem__(self, index: slice) -> EvalWindows:
        lo, hi, step = index.indices(len(self))
        if step != 1:
            raise ValueError("EvalWindows slices must be contiguous")
        return dataclasses.replace(self, starts=self.starts[lo:hi], first=self.first[lo:hi],
                                   offset=self.offset + lo)

    def rows(self, lo: int, hi: int) -> torch.Tensor:
        """int64 windows [hi - lo, L + 1]."""
        if not self.on_stream:
            return self.source[self.starts[lo:hi]]
        return self.source[self.starts[lo:hi, None] + torch.arange(self.length + 1)]

    def scored(self, lo: int, hi: int) -> torch.Tensor | None:
        """bool [hi - lo, L]: the targets these windows are responsible for; None when all of them."""
        first = self.first[lo:hi]
        if not first.numel() or int(first.max()) == 0:
            return None
        return torch.arange(self.length)[None, :] >= first[:, None]

    def target_positions(self, lo: int, hi: int) -> torch.Tensor:
        """Stream positions of the targets windows lo..hi-1 score (1-D, ascending)."""
        if not self.on_stream:
            raise GolfError("target positions need windows over a token stream, not a block of rows")
        positions = self.starts[lo:hi, None] + 1 + torch.arange(self.length)[None, :]
        keep = self.scored(lo, hi)
        return positions.flatten() if keep is None else positions[keep]

    def read_positions(self, lo: int, hi: int) -> tuple[int, int]:
        """[a, b): the stream positions windows lo..hi-1 read (inputs and targets)."""
        return int(self.starts[lo]), int(self.starts[hi - 1]) + self.length + 1

    def bytes(self, lo: int, hi: int, rows: torch.Tensor, table: ByteTable) -> torch.Tensor:
        """int64 bytes [hi - lo, L] of every target of these windows (rows on the table's device)."""
        if self.sidecar is None:
            return window_bytes(table, rows)
        positions = self.starts[lo:hi, None] + 1 + torch.arange(self.length)[None, :]
        return self.sidecar[positions].to(rows.device, torch.int64)


def plain_windows(rows: torch.Tensor) -> EvalWindows:
    """Windows that are the rows of a block [N, T + 1], every target scored (golf.data.val_windows)."""
    if rows.dim() != 2 or rows.size(1) < 2:
        raise GolfError(f"eval windows must be a [N, T + 1] block with T >= 1, got shape {tuple(rows.shape)}")
    n, length = rows.size(0), rows.size(1) - 1
    return EvalWindows(rows, length, length, torch.arange(n), torch.zeros(n, dtype=torch.int64))


def sliding_windows(tokens: torch.Tensor, length: int, stride: int | None = None, *,
                    sidecar: torch.Tensor | None = None) -> EvalWindows:
    """Windows of `length` every `stride` tokens over the 1-D stream `tokens` (stride None or
    `length`: the non-overlapping blocks). `sidecar`, if given, credits stream position p with
    sidecar[p] bytes instead of the byte table's count."""
    stride = length if stride is None else stride
    if length < 1 or not 1 <= stride <= length:
        raise GolfError(f"eval length must be >= 1 and stride between 1 and the eval length, "
                        f"got length {length}, stride {stride}")
    if tokens.dim() != 1:
        raise GolfError(f"sliding windows need a 1-D token stream, got shape {tuple(tokens.shape)}")
    end = usable_tokens(tokens.numel(), length, "the validation token stream") - 1  # M: last target
    starts = torch.arange(0, end - length + 1, stride)
    if int(starts[-1]) + length < end:  # the grid stops short of M: one window ending at M
        starts = torch.cat((starts, torch.tensor([end - length])))
    first = torch.zeros_like(starts)
    first[1:] = starts[:-1] + length - starts[1:]
    if sidecar is not None and sidecar.numel() < end + 1:
        raise GolfError(f"byte sidecar covers {sidecar.numel()} positions, the scored stream {end + 1}")
    return EvalWindows(tokens, length, stride, starts, first, sidecar=sidecar)


def as_windows(windows: torch.Tensor | EvalWindows) -> EvalWindows:
    return windows if isinstance(windows, EvalWindows) else plain_windows(windows)


@torch.no_grad()
def require_causal_exact(model: LanguageModel, row: torch.Tensor, *, what: str,
                         autocast_dtype: torch.dtype | None = None, samples: int = 1) -> None:
    """Refuse `what` (sliding windows, test-time training) for a model whose score is not an exact,
    causal chain: a `bound` label, or per-target nats that move when a later token changes.

    The probe scores one window [1, L + 1], changes its middle and last tokens and scores it again:
    targets before the middle one must keep their nats (to rounding).
    """
    length = row.size(-1) - 1
    if length < 3:
        return  # too short to probe; nothing can leak in a 2-target window that a plain one would not
    pos = length // 2
    changed = row.clone()
    changed[..., [pos, length]] = (changed[..., [pos, length]] + 1) % model.vocab_size
    with torch.autocast(row.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
        # A Monte Carlo model needs its draws (it is refused for its label, not for its noise).
        before = model.score(row, generator=torch.Generator(row.device).manual_seed(0), samples=samples)
        after = model.score(changed, generator=torch.Generator(row.device).manual_seed(0), samples=samples)
    if before.label != "exact":
        raise GolfError(f"{what} needs an exact, causal score; model {model.variant!r} returns a "
                        f"{before.label}: its per-token terms see the whole window, so overlapping windows "
                        "sum to no bound. Score it with plain windows (stride = eval length, no TTT)")
    moved = (before.nats[..., :pos - 1].float() - after.nats[..., :pos - 1].float()).abs().max()
    if float(moved) > 1e-3:
        raise GolfError(f"{what} needs a causal score, but model {model.variant!r}'s nats for earlier targets "
                        f"moved by {float(moved):.3g} when a later token changed")
