"""Exact bits per byte: the bytes each scored token stands for, for any SentencePiece tokenizer.

The score is Σ nats / (ln 2 · N_bytes), where N_bytes credits every scored target token with the
UTF-8 bytes it stands for. The official train_gpt.py's `build_sentencepiece_luts` (the "official
rule") credits:

- control, unknown and unused pieces (BOS, EOS, PAD, UNK): 0 bytes, and they are boundaries;
- a byte-fallback piece <0xNN>: 1 byte;
- any other piece: the UTF-8 length of its text without one leading "▁", plus 1 byte for that
  "▁" (a space) unless the previous token is a boundary.

That is exact for the challenge's tokenizers, not for every SentencePiece model: a "▁" inside a
piece ("of▁the", from split_by_whitespace=False, or "the▁" with whitespace as a suffix) is
counted as its 3 UTF-8 bytes though it decodes to one space, and where the decoder keeps a
document's leading space (no dummy prefix, extra whitespace kept) the rule drops it. golf's table
(rule "exact", the default) credits what a piece decodes to: every "▁" is one space byte, and a
leading one is dropped after a boundary only where SentencePiece's decoder drops it. For the
challenge tokenizers the two tables are identical, entry for entry.

What no table can count is refused: an <unk> token stands for text the ids do not hold
(`refuse_unknown_tokens`), and a few tokenizer settings make decoding disagree with the text
(`tokenizer_refusal`; golf.tokenizers classifies a tokenizer in full). `audit_bytes` (a token
stream; golf.corpus.CorpusAudit does documents on every `golf data build`) checks the table
against the decoded text itself.
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
from golf.spm_model import ModelSpec, read_spec

SPACE = "\u2581"  # "▁", SentencePiece's stand-in for a space
LABELS = ("exact", "bound")  # exact: chain rule over a normalised distribution; bound: an upper bound (ELBO)
RULES = ("exact", "official")  # byte tables: what pieces decode to; build_sentencepiece_luts to the letter
_BOUNDARY_TYPES = ("control", "unknown", "unused")
_STREAM_CHUNK = 1 << 24  # tokens per gather when totalling a whole val split (62M tokens)


def load_tokenizer(path: str | Path) -> spm.SentencePieceProcessor:
    path = Path(path)
    if not path.is_file():
        raise GolfError(f"tokenizer {path} not found (expected a SentencePiece .model file)")
    try:
        return spm.SentencePieceProcessor(model_file=str(path))
    except (RuntimeError, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise GolfError(f"tokenizer {path} is not a valid SentencePiece model ({reason})") from None


# --- tokenizers no table counts ------------------------------------------------------------------

def tokenizer_refusal(sp: spm.SentencePieceProcessor, spec: ModelSpec) -> str | None:
    """Why no byte table can count this tokenizer's bytes (one line), or None."""
    if not spec.escape_whitespaces:
        return ("tokenizer does not write spaces as '▁' (escape_whitespaces=false, which sentencepiece's trainers "
                "refuse: the model was edited) yet its decoder turns every '▁' into a space; retrain it")
    if spec.treat_whitespace_as_suffix and spec.add_dummy_prefix:
        return ("tokenizer puts '▁' at the end of pieces and adds a dummy one to every text, which decoding "
                "keeps: each document would count a space that is not in it; retrain with add_dummy_prefix=false")
    space_id = sp.piece_to_id(SPACE)
    if space_id == sp.unk_id() or sp.id_to_piece(space_id) != SPACE:
        # A space the merges don't absorb becomes the three byte-fallback pieces of "▁" (E2 96 81):
        # 3 bytes for 1 byte of text, and they decode to a literal "▁" (openai/parameter-golf #897).
        return ('tokenizer has no standalone "▁" piece, so spaces would be counted as 3 byte-fallback '
                "bytes (issue #897); retrain it with '▁' in the vocabulary")
    return None


def check_tokenizer(sp: spm.SentencePieceProcessor) -> None:
    """Refuse, in one line, a tokenizer whose bytes no table can count."""
    refusal = tokenizer_refusal(sp, read_spec(sp))
    if refusal:
        raise GolfError(refusal)


# --- byte tables --------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)  # eq=False: tensors don't compare to a single bool
class ByteTable:
    """Per-token lookup tables of a byte rule, indexed by token id."""

    base_bytes: torch.Tensor  # int16 [V]: bytes of the piece without the leading "▁" split off
    has_leading_space: torch.Tensor  # bool [V]: a leading "▁" split off, worth 1 byte except after a boundary
    is_boundary: torch.Tensor  # bool [V]: control/unknown/unused; no space is credited after it

    @property
    def vocab_size(self) -> int:
        return self.base_bytes.numel()

    def to(self, device: torch.device | str) -> ByteTable:
        return ByteTable(self.base_bytes.to(device), self.has_leading_space.to(device), self.is_boundary.to(device))


def build_byte_table(sp: spm.SentencePieceProcessor, vocab_size: int | None = None, *,
                     rule: str = "exact", check: bool = True) -> ByteTable:
    """The byte table of `rule` (see RULES and the module docstring); size max(sp vocab, vocab_size).

    Ids past the tokenizer's vocabulary (a model padded to a rounder size) stay 0-byte boundaries.
    `check=False` skips `check_tokenizer`, only to study a tokenizer no table counts right.
    """
    if rule not in RULES:
        raise GolfError(f"byte rule must be one of {', '.join(RULES)}, not {rule!r}")
    spec = read_spec(sp)
    if check and (refusal := tokenizer_refusal(sp, spec)):
        raise GolfError(refusal)
    size = max(len(spec.piece_types), vocab_size or 0)
    base = np.zeros(size, dtype=np.int16)
    space = np.zeros(size, dtype=np.bool_)
    boundary = np.ones(size, dtype=np.bool_)
    # The official rule always takes a leading "▁" off the piece and credits it only after a
    # non-boundary; SentencePiece's decoder drops it at a text's start only under these flags.
    split_leading = rule == "official" or spec.decoder_drops_leading_space
    for i, kind in enumerate(spec.piece_types):
        if kind in _BOUNDARY_TYPES:
            continue
        boundary[i] = False
        if kind == "byte":
            base[i] = 1
            continue
        piece = sp.id_to_piece(i)
        if split_leading and piece.startswith(SPACE):
            space[i] = True
            piece = piece[1:]
        if rule == "exact":  # any other "▁" decodes to one space
            piece = piece.replace(SPACE, " ")
        base[i] = len(piece.encode("utf-8"))
    return ByteTable(torch.from_numpy(base), torch.from_numpy(space), torch.from_numpy(boundary))


def same_table(a: ByteTable, b: ByteTable) -> bool:
    return (torch.equal(a.base_bytes, b.base_bytes) and torch.equal(a.has_leading_space, b.has_leading_space)
            and torch.equal(a.is_boundary, b.is_boundary))


def target_bytes(table: ByteTable, prev: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """int64 bytes credited to each `target` token given the token before it (same shape)."""
    space = table.has_leading_space[target] & ~table.is_boundary[prev]
    return table.base_bytes[target].long() + space.long()


def window_bytes(table: ByteTable, windows: torch.Tensor) -> torch.Tensor:
    """Bytes of the T scored targets of each [B, T+1] window: windows[:, 1:] after windows[:, :-1]."""
    return target_bytes(table, windows[:, :-1], windows[:, 1:])


def stream_bytes(table: ByteTable, tokens: torch.Tensor) -> int:
    """Bytes credited to the targets tokens[1:] of a 1-D stream, in chunks to bound memory."""
    table = table.to("cpu")
    return sum(int(target_bytes(table, part[:-1], part[1:]).sum())
               for part in (tokens[lo:lo + _STREAM_CHUNK + 1] for lo in range(0, tokens.numel() - 1, _STREAM_CHUNK)))


# --- scoring: refuse what cannot be counted, say where the official rule differs ----------------

def refuse_unknown_tokens(targets: torch.Tensor | np.ndarray, sp: spm.SentencePieceProcessor, what: str) -> None:
    """Refuse <unk> among scored targets: the text it replaced is not in the ids, so neither are its bytes."""
    unknown = int((targets == sp.unk_id()).sum())
    if unknown:
        raise GolfError(f"{what} hold {unknown:,} <unk> tokens (id {sp.unk_id()}) among {len(targets):,}: the text "
                        "they replaced is not in the ids, so its bytes cannot be counted; rebuild the shards with a "
                        "byte-fallback tokenizer (`golf data tokenizer` trains one)")


@dataclass(frozen=True)
class RuleDifference:
    """Byte totals of the same scored targets under golf's exact table and the official rule."""

    exact_bytes: int
    official_rule_bytes: int

    def note(self) -> str:
        change = 100 * (self.official_rule_bytes / self.exact_bytes - 1) if self.exact_bytes else math.inf
        return (f"bytes: {self.exact_bytes:,} exact (what the tokens decode to), scored with; the official rule "
                f"(build_sentencepiece_luts) would count {self.official_rule_bytes:,} ({change:+.2f}%) "
                "for this tokenizer")


def scoring_table(sp: spm.SentencePieceProcessor, tokens: torch.Tensor,
                  vocab_size: int | None = None) -> tuple[ByteTable, RuleDifference | None]:
    """The exact byte table for scoring the targets tokens[1:] of a val stream, after refusing the
    tokenizer or the tokens if their bytes cannot be counted. The RuleDifference is there only when
    the official rule would credit these targets another total, so callers can say so once."""
    table = build_byte_table(sp, vocab_size)
    refuse_unknown_tokens(tokens[1:], sp, "the scored val tokens")
    official = build_byte_table(sp, vocab_size, rule="official", check=False)
    if same_table(table, official):
        return table, None
    exact_total, official_total = stream_bytes(table, tokens), stream_bytes(official, tokens)
    return table, (RuleDifference(exact_total, official_total) if exact_total != official_total else None)


def bits_per_byte(nats_sum: float, n_bytes: int) -> float:
    if n_bytes <= 0:
        raise GolfError(f"cannot compute bits per byte over {n_bytes} bytes; the scored text is empty")
    return nats_sum / math.log(2) / n_bytes


def check_label(label: str) -> str:
    if label not in LABELS:
        raise GolfError(f"score label must be one of {', '.join(LABELS)}, not {label!r}")
    return label


# --- audits: the table against the decoded text -------------------------------------------------

def _text_bytes(decoded: str) -> int:
    """UTF-8 length of decoded text, a literal "▁" read as the space it stands for.

    A sound tokenizer never decodes to "▁" (its "▁" pieces decode to spaces); byte-fallback pieces
    E2 96 81 do (issue #897), and there the text had one space, not 3 bytes.
    """
    return len(decoded.replace(SPACE, " ").encode("utf-8"))


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
    The text side is each document decoded, its UTF-8 length with "▁" read as a space (`_text_bytes`).
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
    texts = sp.decode(docs) if docs else []
    text_bytes = np.array([_text_bytes(t) for t in texts], dtype=np.int64)
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

