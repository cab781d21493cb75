"""The bytes the byte rule credits to each scored token, as bytes rather than counts.

`golf.bpb.build_byte_table` counts, per target token, the UTF-8 bytes of its piece without one
leading "▁", plus 1 for that "▁" (a space) unless the previous token is a boundary; byte-fallback
pieces are their one byte, control pieces nothing. This module produces those very bytes, so a
compressor scored on them (golf.golfers) and a per-byte colour map (golf.report) see exactly the
bytes a model's bpb divides by: `len(b"".join(target_bytes(...)))` equals the table's sum.
"""

from __future__ import annotations

import numpy as np
import sentencepiece as spm
import torch

from golf.bpb import SPACE

# Stands for a boundary target (BOS: a new document) in a text fed to a compressor. The tokenizer
# normalizes whitespace runs to one space, so no piece holds a newline and this is unambiguous.
DOC_SEPARATOR = b"\n"


class CreditedBytes:
    """The byte rule of one tokenizer, giving bytes: per piece its bytes without the leading "▁",
    whether it has that "▁", and whether it is a boundary (control, unknown, unused)."""

    def __init__(self, sp: spm.SentencePieceProcessor) -> None:
        n = sp.vocab_size()
        self.pieces: list[bytes] = []
        self.space = np.zeros(n, dtype=bool)
        self.boundary = np.zeros(n, dtype=bool)
        for i in range(n):
            if sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i):
                self.boundary[i] = True
                self.pieces.append(b"")
            elif sp.is_byte(i):
                self.pieces.append(bytes([int(sp.id_to_piece(i)[3:5], 16)]))  # "<0xNN>"
            else:
                piece = sp.id_to_piece(i)
                self.space[i] = piece.startswith(SPACE)
                self.pieces.append(piece[1:].encode("utf-8") if self.space[i] else piece.encode("utf-8"))

    def targets(self, tokens: torch.Tensor | np.ndarray) -> list[bytes]:
        """The bytes credited to each target tokens[1:] (b"" for a boundary target such as BOS)."""
        ids = _ids(tokens)
        return [(b" " if self.space[cur] and not self.boundary[prev] else b"") + self.pieces[cur]
                for prev, cur in zip(ids[:-1].tolist(), ids[1:].tolist())]

    def compressor_text(self, tokens: torch.Tensor | np.ndarray) -> tuple[bytes, int]:
        """(text for a compressor, bytes credited): every target's bytes, with DOC_SEPARATOR where
        a boundary target (BOS) starts a new document. The separator is compressed (it costs bits,
        as a model pays nats for predicting BOS) but credited 0 bytes, like BOS."""
        ids = _ids(tokens)
        parts = self.targets(ids)
        text = b"".join(DOC_SEPARATOR if self.boundary[t] else p for t, p in zip(ids[1:].tolist(), parts))
        return text, sum(len(p) for p in parts)


def _ids(tokens: torch.Tensor | np.ndarray) -> np.ndarray:
    return np.asarray(tokens.cpu().numpy() if isinstance(tokens, torch.Tensor) else tokens, dtype=np.int64)
