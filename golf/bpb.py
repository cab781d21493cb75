"""Exact bits per byte: the challenge's byte-counting rule for SentencePiece tokens, and an audit.

The score is Σ nats / (ln 2 · N_bytes), where N_bytes credits every scored target token with the
UTF-8 bytes it stands for. We follow `build_sentencepiece_luts` in the official train_gpt.py to
the letter, because any other count moves the bpb:

- control, unknown and unused pieces (BOS, EOS, PAD, UNK) are boundaries worth 0 bytes;
- a byte-fallback piece <0xNN> is 1 byte;
- any other piece is the UTF-8 length of its text without one leading "▁", plus 1 byte for that
  "▁" (a space) unless the previous token is a boundary: with add_dummy_prefix=False a document's
  first word has no space in front of it.

`audit_bytes` checks the rule against the text itself: for every whole document in a token stream
the table's byte total must equal the UTF-8 length of the decoded document.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import sentencepiece as spm
import torch

from golf.errors import GolfError

SPACE = "\u2581"  # "▁", SentencePiece's stand-in for a space
LABELS = ("exact", "bound")  # exact: chain rule over a normalised distribution; bound: an upper bound (ELBO)


def load_tokenizer(path: str | Path) -> spm.SentencePieceProcessor:
    path = Path(path)
    if not path.is_file():
        raise GolfError(f"tokenizer {path} not found (expected a SentencePiece .model file)")
    try:
        return spm.SentencePieceProcessor(model_file=str(path))
    except (RuntimeError, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise GolfError(f"tokenizer {path} is not a valid SentencePiece model ({reason})") from None


def check_tokenizer(sp: spm.SentencePieceProcessor) -> None:
    """Refuse a tokenizer with no standalone "▁" piece.

    Without it, a space the merges don't absorb is encoded as the three byte-fallback pieces of
    "▁" (E2 96 81), which the rule counts as 3 bytes for 1 byte of text: the bpb gets silently
    better (openai/parameter-golf issue #897).
    """
    space_id = sp.piece_to_id(SPACE)
    if space_id == sp.unk_id() or sp.id_to_piece(space_id) != SPACE:
        raise GolfError('tokenizer has no standalone "▁" piece, so spaces would be counted as 3 '
                        "byte-fallback bytes (issue #897); retrain it with '▁' in the vocabulary")


@dataclass(frozen=True, eq=False)  # eq=False: tensors don't compare to a single bool
class ByteTable:
    """Per-token lookup tables for the byte rule, indexed by token id."""

    base_bytes: torch.Tensor  # int16 [V]: UTF-8 bytes of the piece without its leading "▁"
    has_leading_space: torch.Tensor  # bool [V]: the piece starts with "▁"
    is_boundary: torch.Tensor  # bool [V]: control/unknown/unused; no space is credited after it

    @property
    def vocab_size(self) -> int:
        return self.base_bytes.numel()

    def to(self, device: torch.device | str) -> ByteTable:
        return ByteTable(self.base_bytes.to(device), self.has_leading_space.to(device), self.is_boundary.to(device))


def build_byte_table(sp: spm.SentencePieceProcessor, vocab_size: int | None = None, *,
                     check: bool = True) -> ByteTable:
    """The official `build_sentencepiece_luts` tables; size max(sp vocab, vocab_size).

    Ids past the tokenizer's vocabulary (a model padded to a rounder size) stay 0-byte boundaries.
    `check=False` skips `check_tokenizer`, only to study a tokenizer the rule miscounts.
    """
    if check:
        check_tokenizer(sp)
    n_pieces = sp.vocab_size()
    size = max(n_pieces, vocab_size or 0)
    base = np.zeros(size, dtype=np.int16)
    space = np.zeros(size, dtype=np.bool_)
    boundary = np.ones(size, dtype=np.bool_)
    for i in range(n_pieces):
        if sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i):
            continue
        boundary[i] = False
        if sp.is_byte(i):
            base[i] = 1
            continue
        piece = sp.id_to_piece(i)
        if piece.startswith(SPACE):
            space[i] = True
            piece = piece[1:]
        base[i] = len(piece.encode("utf-8"))
    return ByteTable(torch.from_numpy(base), torch.from_numpy(space), torch.from_numpy(boundary))


def target_bytes(table: ByteTable, prev: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """int64 bytes credited to each `target` token given the token before it (same shape)."""
    space = table.has_leading_space[target] & ~table.is_boundary[prev]
    return table.base_bytes[target].long() + space.long()


def window_bytes(table: ByteTable, windows: torch.Tensor) -> torch.Tensor:
    """Bytes of the T scored targets of each [B, T+1] window: windows[:, 1:] after windows[:, :-1]."""
    return target_bytes(table, windows[:, :-1], windows[:, 1:])


def bits_per_byte(nats_sum: float, n_bytes: int) -> float:
    if n_bytes <= 0:
        raise GolfError(f"cannot compute bits per byte over {n_bytes} bytes; the scored text is empty")
    return nats_sum / math.log(2) / n_bytes


def check_label(label: str) -> str:
    if label not in LABELS:
        raise GolfError(f"score label must be one of {', '.join(LABELS)}, not {label!r}")
    return label


def normalized_text_bytes(sp: spm.SentencePieceProcessor, text: str) -> int:
    """UTF-8 length of `text` as the tokenizer sees it, i.e. what the byte rule should count.

    `sp.normalize` applies the model's rule (nmt_nfkc: NFKC, whitespace runs collapsed, ends
    stripped) and writes spaces as "▁". A leading "▁" is dropped because the rule never counts a
    space right after BOS; every other "▁" is one space byte (a literal "▁" in the text is
    whitespace to SentencePiece too, and decodes to " ").
    """
    return _spaced_len(sp.normalize(text))


def _spaced_len(normalized: str) -> int:
    """UTF-8 length of normalized text with "▁" read as a space and a leading one dropped."""
    if normalized.startswith(SPACE):
        normalized = normalized[1:]
    return len(normalized.replace(SPACE, " ").encode("utf-8"))


@dataclass(frozen=True)
class Mismatch:
    doc: int  # index of the document in the stream, counting partial ones
    table_bytes: int
    text_bytes: int


@dataclass
class AuditReport:
    targets: int  # scored tokens: all but the first token of the stream
    table_bytes: int  # bytes the table credits to all of them
    implied_bytes_per_token: float
    docs_checked: int
    docs_failed: int
    partial: int  # documents cut by the start or end of the stream: skipped, not failed
    table_bytes_checked: int
    text_bytes_checked: int
    mismatches: list[Mismatch] = field(default_factory=list)  # the first few only
    ok: bool = False  # nothing failed and at least one document was checked


def audit_bytes(tokens: torch.Tensor | np.ndarray | Sequence[int], sp: spm.SentencePieceProcessor,
                table: ByteTable, *, bos_id: int | None = None, stream_complete: bool = False,
                max_mismatches: int = 5) -> AuditReport:
    """Check the table against the decoded text, document by document, on a scored token stream.

    Targets are tokens[1:], each credited with its predecessor, exactly as in scoring. Each
    document runs from just after a BOS up to and including the next BOS, so a BOS target's
    credit (0 for a correct table) is checked with the document it closes. The last document is
    whole only if `stream_complete` (the stream wasn't capped); one before the first BOS is never.

    The text side is the decoded document normalized again, which changes nothing for a sound
    tokenizer but turns the literal "▁" that byte fallback decodes to (issue #897) into the one
    space it stands for; comparing with the raw decode would hide that inflation.
    """
    ids = np.array(tokens.cpu().numpy() if isinstance(tokens, torch.Tensor) else tokens, dtype=np.int64)
    if ids.ndim != 1:
        raise GolfError(f"audit needs a 1-D token stream, got shape {tuple(ids.shape)}")
    bos = sp.bos_id() if bos_id is None else bos_id
    if bos < 0:
        raise GolfError("tokenizer has no BOS piece; pass bos_id to split the stream into documents")
    n = ids.size
    stream = torch.from_numpy(ids)
    credit = target_bytes(table.to("cpu"), stream[:-1], stream[1:]).numpy() if n > 1 else np.zeros(0, np.int64)
    # cum[i] = bytes credited to stream positions 1..i, so positions (a, b] sum to cum[b] - cum[a].
    cum = np.concatenate(([0], np.cumsum(credit)))

    cuts = np.unique(np.concatenate(([0], np.flatnonzero(ids == bos), [max(n - 1, 0)])))
    starts, ends = cuts[:-1], cuts[1:]  # document j covers stream positions (starts[j], ends[j]]
    whole = (ids[starts] == bos) & ((ids[ends] == bos) | (stream_complete & (ends == n - 1)))
    checked = np.flatnonzero(whole)
    docs = [ids[starts[j] + 1: ends[j] + (ids[ends[j]] != bos)].tolist() for j in checked]
    texts = sp.normalize(sp.decode(docs)) if docs else []
    text_bytes = np.array([_spaced_len(t) for t in texts], dtype=np.int64)
    table_bytes = cum[ends[checked]] - cum[starts[checked]]
    failed = np.flatnonzero(table_bytes != text_bytes)

    total = int(credit.sum())
    return AuditReport(
        targets=n - 1 if n else 0, table_bytes=total,
        implied_bytes_per_token=total / (n - 1) if n > 1 else 0.0,
        docs_checked=int(checked.size), docs_failed=int(failed.size), partial=int((~whole).sum()),
        table_bytes_checked=int(table_bytes.sum()), text_bytes_checked=int(text_bytes.sum()),
        mismatches=[Mismatch(int(checked[k]), int(table_bytes[k]), int(text_bytes[k]))
                    for k in failed[:max_mismatches]],
        ok=bool(checked.size) and not failed.size)
