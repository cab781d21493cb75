"""SentencePiece tokenizers of every class golf must count or refuse, trained small and fast on
the embedded documents, and the end-to-end byte check (`measure`) that tests and
bench/tokenizer_classes.py both run on them."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import sentencepiece as spm
import torch

from golf import embedded
from golf.bpb import build_byte_table, load_tokenizer, scoring_table, stream_bytes
from golf.corpus import build_shards
from golf.data import read_shard
from golf.errors import GolfError
from golf.tokenizers import classify_tokenizer

# Documents that exercise what the embedded FineWeb text rarely does: leading and repeated
# whitespace, newlines and tabs, NFKC-folded characters, a literal "▁", characters outside a
# 1k alphabet, a user-defined symbol, whitespace-only and empty documents. They come first, so
# they are scored (val) documents.
EXTRA_DOCS = [
    "  Leading spaces,  double  spaces and a trailing one ",
    "\n\nA newline first,\tthen a tab and\r\nWindows line ends in New York.",
    "Ligatures ﬁ ﬂ, full-width ＡＢＣ１２３ and ① circled: NFKC folds them.",
    "A literal ▁ in the text, and ▁▁ two of them.",
    "Outside a small alphabet: 日本語のテキスト, emoji 🎉🦜 and ✓.",
    "   ",
    "",
]

# The challenge's settings (golf data tokenizer), which each class changes in one or two ways.
CHALLENGE = dict(model_type="bpe", vocab_size=1024, character_coverage=0.9995, byte_fallback=True,
                 split_digits=True, normalization_rule_name="nmt_nfkc", remove_extra_whitespaces=True,
                 add_dummy_prefix=False, split_by_whitespace=True)

# name -> (settings on top of CHALLENGE, what golf must do: official / exact / refused)
# official: golf's exact table equals the official rule; exact: it differs and golf says so.
CLASSES: dict[str, tuple[dict[str, Any], str]] = {
    "bpe": ({}, "official"),
    "bpe, no split by whitespace": ({"split_by_whitespace": False}, "exact"),
    "unigram": ({"model_type": "unigram"}, "official"),
    "unigram, no split by whitespace": ({"model_type": "unigram", "split_by_whitespace": False}, "exact"),
    "identity normalization": ({"normalization_rule_name": "identity"}, "official"),
    "identity, extra whitespace kept": ({"normalization_rule_name": "identity",
                                         "remove_extra_whitespaces": False}, "exact"),
    "nmt_nfkc, extra whitespace kept": ({"remove_extra_whitespaces": False}, "exact"),
    "nmt_nfkc, extra whitespace kept, dummy prefix": ({"remove_extra_whitespaces": False,
                                                       "add_dummy_prefix": True}, "official"),
    "dummy prefix": ({"add_dummy_prefix": True}, "official"),
    "no byte fallback": ({"byte_fallback": False}, "refused"),
    # Every character of the scored documents in the alphabet (long documents included): no <unk>.
    "no byte fallback, full character coverage": ({"byte_fallback": False, "character_coverage": 1.0,
                                                   "max_sentence_length": 1 << 18}, "official"),
    "user-defined symbols": ({"user_defined_symbols": ["<br>", "http://", "New▁York"]}, "exact"),
    # CaseOps-style case markers: counted as the bytes they decode to, with a warning.
    "user-defined private-use markers": ({"user_defined_symbols": ["\ue001", "\ue002"]}, "official"),
    "whitespace as suffix": ({"treat_whitespace_as_suffix": True}, "exact"),
    "whitespace as suffix, dummy prefix": ({"treat_whitespace_as_suffix": True, "add_dummy_prefix": True},
                                           "refused"),
    "vocab 4k": ({"vocab_size": 4096}, "official"),
    "vocab 8k": ({"vocab_size": 8192}, "official"),
    "unigram 8k, no split by whitespace": ({"model_type": "unigram", "vocab_size": 8192,
                                            "split_by_whitespace": False}, "exact"),
}

# The wide sweep (a slow test and the bench): every combination of the settings the classes vary.
SWEEP = [dict(model_type=model_type, split_by_whitespace=split, normalization_rule_name=norm,
              remove_extra_whitespaces=remove_ws, byte_fallback=fallback, vocab_size=vocab)
         for model_type in ("bpe", "unigram") for split in (True, False) for norm in ("nmt_nfkc", "identity")
         for remove_ws in (True, False) for fallback in (True, False) for vocab in (1024, 4096, 8192)]


def corpus() -> list[str]:
    texts = [json.loads(line)["text"] for line in embedded.docs_path().read_text(encoding="utf-8").splitlines()]
    return EXTRA_DOCS + texts


def train(settings: dict[str, Any], path: Path) -> Path:
    """Train in-process on the corpus and write `path`: a fraction of a second for BPE, ~1-2 s for unigram.

    As the official trainer, documents over max_sentence_length (4192 bytes: 84 of the 200) are
    skipped for training (they are still scored); that keeps unigram without whitespace splitting
    at ~2 s instead of ~25 s. hard_vocab_limit=False lets an 8k vocabulary come out of so little
    text (the tests check the size it reaches).
    """
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter([t for t in corpus() if t.strip()]), model_writer=model,
        **{"max_sentence_length": 4192, **CHALLENGE, **settings}, pad_id=0, bos_id=1, eos_id=2, unk_id=3,
        hard_vocab_limit=False, num_threads=1, minloglevel=2)
    path.write_bytes(model.getvalue())
    return path


def measure(model: Path, work: Path) -> dict[str, Any]:
    """Classify, build shards (which audits every document) and count the val split's bytes three ways.

    Returns the classification, and either the one-line refusal (`refused`, `refused_by`) or the
    bytes of the scored targets by golf (exact) and by the official rule, with the UTF-8 bytes of
    the decoded documents for comparison.
    """
    sp = load_tokenizer(model)
    cls = classify_tokenizer(sp)
    result: dict[str, Any] = {"rule": cls.rule, "vocab_size": sp.vocab_size(), "differences": list(cls.differences),
                              "warnings": list(cls.warnings), "refused": cls.refusal,
                              "refused_by": "classification" if cls.refusal else None}
    if cls.refusal:
        return result
    docs = work / "docs.jsonl"
    texts = corpus()
    docs.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    try:
        summary = build_shards(docs, model, work / "shards", num_val_docs=len(texts), progress=False)
    except GolfError as exc:
        return {**result, "refused": str(exc), "refused_by": "golf data build"}
    tokens = torch.from_numpy(read_shard(work / "shards" / "fineweb_val_000000.bin").astype(np.int64))
    table, difference = scoring_table(sp, tokens)
    starts = torch.nonzero(tokens == sp.bos_id()).flatten().tolist() + [tokens.numel()]
    documents = [tokens[a + 1:b].tolist() for a, b in zip(starts[:-1], starts[1:])]
    return {**result, "docs": len(documents), "targets": tokens.numel() - 1,
            "exact_bytes": stream_bytes(table, tokens),
            "official_rule_bytes": stream_bytes(build_byte_table(sp, rule="official"), tokens),
            "decoded_bytes": sum(len(text.encode("utf-8")) for text in sp.decode(documents)),
            "audit": summary["audit"], "note": difference.note() if difference else None}
