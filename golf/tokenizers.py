"""What a SentencePiece tokenizer does to text, and which byte rule counts it.

`classify_tokenizer` is the one place that says, for any model, how it normalizes, handles
whitespace, falls back and types its pieces, and so whether golf's exact byte table equals the
official rule, differs from it (and why), or is refused (golf.bpb.tokenizer_refusal). The trainer
does not need this module; `golf data info --tokenizer`, `golf data tokenizer` and the build's
audit do.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

import sentencepiece as spm

from golf.bpb import SPACE, tokenizer_refusal
from golf.spm_model import PIECE_TYPES, ModelSpec, read_spec


@dataclass(frozen=True)
class TokenizerClass:
    """How a tokenizer normalizes, splits and falls back, and what that means for its byte count."""

    spec: ModelSpec
    pieces: dict[str, int]  # piece count by type: normal, byte, user_defined, control, unknown, unused
    inner_space_pieces: int  # pieces with a "▁" besides a leading one, e.g. "of▁the"
    differences: tuple[str, ...]  # how the official rule miscounts this tokenizer; empty if it is exact
    refusal: str | None  # why no byte table can count this tokenizer, or None
    warnings: tuple[str, ...] = ()  # counted exactly, but maybe not the bytes one means (see classify_tokenizer)

    @property
    def rule(self) -> str:
        """refused; official (the official rule is exact here, golf's table equals it); or exact
        (golf counts what pieces decode to, the official rule would not)."""
        return "refused" if self.refusal else "exact" if self.differences else "official"

    def as_dict(self) -> dict[str, Any]:
        spec = {k: v for k, v in asdict(self.spec).items() if k != "piece_types"}
        return {**spec, "vocab_size": len(self.spec.piece_types), "pieces": self.pieces,
                "inner_space_pieces": self.inner_space_pieces, "rule": self.rule,
                "differences": list(self.differences), "refusal": self.refusal, "warnings": list(self.warnings)}


def classify_tokenizer(sp: spm.SentencePieceProcessor) -> TokenizerClass:
    """Read the model's settings and pieces and say which byte rule applies (see TokenizerClass.rule)."""
    spec = read_spec(sp)
    texts = [sp.id_to_piece(i) for i, kind in enumerate(spec.piece_types) if kind in ("normal", "user_defined")]
    inner = [piece for piece in texts if SPACE in piece[1:]]
    differences = []
    if inner:
        differences.append(f"{len(inner)} pieces hold a '▁' besides a leading one (such as {inner[0]!r}): "
                           "the official rule counts each such '▁' as 3 bytes, it decodes to 1 space")
    if not spec.decoder_drops_leading_space and any(piece.startswith(SPACE) for piece in texts):
        differences.append("the decoder keeps a document's leading space (add_dummy_prefix and "
                           "remove_extra_whitespaces are both off): the official rule drops it after BOS")
    # Private-use characters are markers a text transform inserted (CaseOps writes U+E001..U+E004
    # before capitalised letters): they decode, and are counted, as 3 bytes each that the original
    # text does not have. Such records score original bytes from a per-token sidecar instead.
    markers = [ascii(sp.id_to_piece(i)) for i, kind in enumerate(spec.piece_types) if kind == "user_defined"
               and all(unicodedata.category(c) == "Co" for c in sp.id_to_piece(i))]
    warnings = [f"{len(markers)} user-defined pieces are private-use characters ({', '.join(markers[:4])}), "
                "markers of a text transform such as CaseOps: golf counts the bytes they decode to, as the official "
                "rule does, so a bpb is per byte of the transformed text, not of the original"] if markers else []
    counts = Counter(spec.piece_types)
    pieces = {kind: counts[kind] for kind in PIECE_TYPES.values() if counts[kind]}
    return TokenizerClass(spec=spec, pieces=pieces, inner_space_pieces=len(inner),
                          differences=tuple(differences), refusal=tokenizer_refusal(sp, spec), warnings=tuple(warnings))


def normalized_texts(sp: spm.SentencePieceProcessor, spec: ModelSpec, texts: list[str]) -> list[str]:
    """Each text as the tokenizer sees it, spaces written as spaces: what decoding its ids must give.

    `sp.normalize` applies the model's rule (nmt_nfkc: NFKC, whitespace runs collapsed, ends
    stripped), writes spaces as "▁" and adds the dummy prefix, which decoding removes. A literal
    "▁" in the text is whitespace to SentencePiece too, and decodes to " ".
    """
    normalized = sp.normalize(texts)
    if spec.add_dummy_prefix:  # (a dummy suffix is refused: tokenizer_refusal)
        normalized = [t[1:] if t.startswith(SPACE) else t for t in normalized]
    return [t.replace(SPACE, " ") for t in normalized]
