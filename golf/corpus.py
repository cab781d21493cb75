"""Documents to shards, and tokenizer training, following the official export.

`build_shards` reproduces `data/download_hf_docs_and_tokenize.py`: every document becomes
[BOS] + its SentencePiece ids (no EOS), documents are concatenated in order, the first
`num_val_docs` go to `fineweb_val_*.bin` and the rest to `fineweb_train_*.bin`, and a document may
straddle two shards. Every document is also decoded back and checked against the byte table
(`CorpusAudit`), so shards whose bytes cannot be counted exactly are never written.
`train_tokenizer` uses the official SentencePiece BPE settings, byte fallback included, and
refuses a result no byte table can count.

Text is encoded exactly as stored. The official exporter does not touch NUL characters; only its
tokenizer trainer replaces them with spaces (and strips), so that is the one place we do too:
changing them before encoding would change the ids (NUL encodes as byte piece <0x00>).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import sentencepiece as spm
import torch
from tqdm import tqdm

from golf.data import write_shard
from golf.bpb import ByteTable, build_byte_table, load_tokenizer, same_table, target_bytes
from golf.safefiles import staged_output
from golf.embedded import file_sha256
from golf.errors import GolfError
from golf.spm_model import read_spec
from golf.tokenizers import classify_tokenizer, normalized_texts

DOC_SUFFIXES = (".jsonl", ".txt")
ENCODE_BATCH_DOCS = 1024  # large enough for sentencepiece's threads, small enough to stream
PathLike = str | Path


def iter_documents(paths: PathLike | Iterable[PathLike]) -> Iterator[str]:
    """Each document's text: a .jsonl line's "text" field, a whole .txt file, or a directory's files."""
    for path in _path_list(paths):
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix in DOC_SUFFIXES and p.is_file())
            if not files:
                raise GolfError(f"{path}: directory has no .jsonl or .txt document files")
            yield from iter_documents(files)
        elif not path.exists():
            raise GolfError(f"{path}: no such document file or directory")
        elif path.suffix == ".jsonl":
            yield from _jsonl_texts(path)
        elif path.suffix == ".txt":
            yield _read_utf8(path)
        else:
            raise GolfError(f"{path}: unsupported document file (expected .jsonl, .txt or a directory)")


def _path_list(paths: PathLike | Iterable[PathLike]) -> list[Path]:
    return [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]


def _read_utf8(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise GolfError(f"{path}: not valid UTF-8 (byte {exc.start})") from None


def _jsonl_texts(path: Path) -> Iterator[str]:
    with path.open("r", encoding="utf-8") as f:
        try:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise GolfError(f"{path}:{lineno}: bad JSON ({exc.msg} at column {exc.colno})") from None
                except RecursionError:
                    raise GolfError(f"{path}:{lineno}: JSON nested too deeply to be a document") from None
                if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                    raise GolfError(f'{path}:{lineno}: expected an object with a string "text" field')
                yield obj["text"]
        except UnicodeDecodeError as exc:
            raise GolfError(f"{path}: not valid UTF-8 (byte {exc.start} of a line)") from None


class CorpusAudit:
    """The byte audit of `golf data build`: every document is decoded back and compared, batch by batch.

    A document fails if it holds <unk>, if decoding its ids does not give back its normalized text,
    or if the exact table credits [BOS] + ids another number of bytes than that text has. The first
    failure raises, so a tokenizer that cannot be scored exactly is refused before any training.
    """

    def __init__(self, sp: spm.SentencePieceProcessor) -> None:
        self.sp = sp
        self.spec = read_spec(sp)
        self.tokenizer_class = classify_tokenizer(sp)
        self.table = build_byte_table(sp)  # refuses the tokenizer itself first
        official = build_byte_table(sp, rule="official", check=False)
        self.official = None if same_table(self.table, official) else official  # None: counts as self.table
        self.docs = self.bytes = self.official_rule_bytes = 0

    def add(self, texts: list[str], encoded: list[list[int]]) -> None:
        first, unk = self.docs, self.sp.unk_id()
        unknown = [ids.count(unk) for ids in encoded]
        if any(unknown):
            at = next(k for k, count in enumerate(unknown) if count)
            raise GolfError(f"documents {first:,}..{first + len(texts) - 1:,} hold {sum(unknown):,} <unk> tokens "
                            f"(the first in document {first + at:,}): characters outside the tokenizer's alphabet, "
                            "whose bytes the ids do not hold; use a byte-fallback tokenizer (`golf data tokenizer` "
                            "trains one)")
        decoded = self.sp.decode(encoded)
        for k, (got, want) in enumerate(zip(decoded, normalized_texts(self.sp, self.spec, texts))):
            if got != want:
                at = next((c for c, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
                raise GolfError(f"document {first + k:,} does not decode back to its text (from character {at}: "
                                f"{want[at:at + 12]!r} became {got[at:at + 12]!r}), so its bytes cannot be counted "
                                "exactly; use another tokenizer")
        tokens, starts = self._stream(encoded)
        credits = self._doc_bytes(self.table, tokens, starts)
        for k, (credit, text) in enumerate(zip(credits, decoded)):
            if credit != len(text.encode("utf-8")):
                raise GolfError(f"document {first + k:,}: the byte table credits {credit:,} bytes but the text "
                                f"decodes to {len(text.encode('utf-8')):,}; golf's byte table is wrong for this "
                                "tokenizer, please report it")
        self.docs += len(texts)
        self.bytes += int(credits.sum())
        official = credits if self.official is None else self._doc_bytes(self.official, tokens, starts)
        self.official_rule_bytes += int(official.sum())

    def _stream(self, encoded: list[list[int]]) -> tuple[torch.Tensor, np.ndarray]:
        """The documents as stored in a shard, [BOS] + ids each, and where each one starts."""
        lengths = np.array([len(ids) + 1 for ids in encoded], dtype=np.int64)
        starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        is_bos = np.zeros(int(lengths.sum()), dtype=np.bool_)
        is_bos[starts] = True
        stream = np.full(is_bos.size, self.sp.bos_id(), dtype=np.int64)
        stream[~is_bos] = np.fromiter(itertools.chain.from_iterable(encoded), np.int64, count=int((~is_bos).sum()))
        return torch.from_numpy(stream), starts

    @staticmethod
    def _doc_bytes(table: ByteTable, tokens: torch.Tensor, starts: np.ndarray) -> np.ndarray:
        """Bytes `table` credits each document of `tokens` (its BOS credited 0)."""
        credit = np.concatenate(([0], target_bytes(table, tokens[:-1], tokens[1:]).numpy()))
        return np.add.reduceat(credit, starts)

    def summary(self) -> dict[str, Any]:
        return {"docs": self.docs, "bytes": self.bytes, "official_rule_bytes": self.official_rule_bytes,
                "rule": self.tokenizer_class.rule, "warnings": list(self.tokenizer_class.warnings)}


class _ShardWriter:
    """Packs token arrays into fixed-size shards, one split at a time, as the official export."""

    def __init__(self, out_dir: Path, shard_tokens: int) -> None:
        self.out_dir = out_dir
        self.buf = np.empty(shard_tokens, dtype=np.uint16)
        self.fill = 0
        self.split = "val"
        self.stats = {s: {"docs": 0, "tokens": 0, "shards": 0} for s in ("val", "train")}
        self.files: list[Path] = []

    def add(self, split: str, tokens: np.ndarray) -> None:
        if split != self.split:  # a split never shares a shard with the other
            self.flush()
            self.split = split
        self.stats[split]["docs"] += 1
        self.stats[split]["tokens"] += len(tokens)
        pos = 0
        while pos < len(tokens):
            take = min(len(self.buf) - self.fill, len(tokens) - pos)
            self.buf[self.fill:self.fill + take] = tokens[pos:pos + take]
            self.fill += take
            pos += take
            if self.fill == len(self.buf):
                self.flush()

    def flush(self) -> None:
        if self.fill == 0:
            return
        stats = self.stats[self.split]
        path = self.out_dir / f"fineweb_{self.split}_{stats['shards']:06d}.bin"
        write_shard(path, self.buf[:self.fill])
        self.files.append(path)
        stats["shards"] += 1
        self.fill = 0


def build_shards(doc_paths: PathLike | Iterable[PathLike], tokenizer_path: PathLike, out_dir: PathLike, *,
                 num_val_docs: int, shard_tokens: int = 100_000_000, overwrite: bool = False,
                 progress: bool = True) -> dict[str, Any]:
    """Tokenize documents into val/train shards in `out_dir`; returns a summary of what was written."""
    out_dir = Path(out_dir)
    if num_val_docs < 0:
        raise GolfError(f"num_val_docs must be >= 0, got {num_val_docs}")
    if shard_tokens <= 0:
        raise GolfError(f"shard_tokens must be positive, got {shard_tokens}")
    doc_paths = _path_list(doc_paths)
    sp = load_tokenizer(tokenizer_path)
    vocab_size, bos = sp.vocab_size(), sp.bos_id()
    if vocab_size > 2**16:
        raise GolfError(f"{tokenizer_path}: vocab_size {vocab_size} does not fit uint16 shards (max 65536)")
    if bos < 0:
        raise GolfError(f"{tokenizer_path}: tokenizer has no BOS piece, which starts every document in a shard")
    audit = CorpusAudit(sp)  # refuses a tokenizer no byte table can count before anything is encoded
    existing = sorted([*out_dir.glob("fineweb_train_*.bin"), *out_dir.glob("fineweb_val_*.bin")])
    if existing and not overwrite:
        raise GolfError(f"{out_dir} already holds {len(existing)} shards ({existing[0].name}, ...); "
                        "pass --force (overwrite=True) to replace them")

    # Shards are written beside out_dir and moved in only once every document is in: a bad
    # document or a full disk leaves out_dir (and any shards it held) as it was.
    with staged_output(out_dir) as stage:
        writer = _ShardWriter(stage, shard_tokens)
        docs = iter_documents(doc_paths)
        with tqdm(desc="build shards", unit="doc", disable=None if progress else True) as bar:
            while batch := list(itertools.islice(docs, ENCODE_BATCH_DOCS)):
                encoded = sp.encode(batch, out_type=int)
                audit.add(batch, encoded)
                for ids in encoded:
                    tokens = np.empty(len(ids) + 1, dtype=np.uint16)
                    tokens[0] = bos
                    tokens[1:] = ids
                    n_docs = writer.stats["val"]["docs"] + writer.stats["train"]["docs"]
                    writer.add("val" if n_docs < num_val_docs else "train", tokens)
                bar.update(len(batch))
        writer.flush()
        if not writer.files:
            raise GolfError(f"no documents found in {', '.join(map(str, doc_paths))}")
    files = [out_dir / p.name for p in writer.files]
    for stale in set(existing) - set(files):  # replaced shards of a longer earlier build
        stale.unlink()
    return {"out_dir": str(out_dir), "tokenizer": str(tokenizer_path),
            "tokenizer_sha256": file_sha256(tokenizer_path), "vocab_size": vocab_size, "bos_id": bos,
            **writer.stats, "files": [str(p) for p in files], "audit": audit.summary()}


def train_tokenizer(doc_paths: PathLike | Iterable[PathLike], out_prefix: PathLike, *, vocab_size: int,
                    max_docs: int | None = None, progress: bool = True) -> Path:
    """Train a SentencePiece BPE with the official settings; writes <prefix>.model/.vocab.

    Byte fallback is always on, so no character becomes <unk>; a result no byte table can count
    (`golf.bpb.check_tokenizer`, e.g. no "▁" piece from a corpus without spaces) is refused.
    """
    if not 0 < vocab_size <= 2**16:
        raise GolfError(f"vocab_size must be in 1..65536 (shards store uint16 ids), got {vocab_size}")
    prefix = Path(out_prefix)
    outputs = [prefix.with_name(prefix.name + suffix) for suffix in (".model", ".vocab")]
    if any(p.exists() for p in outputs):
        raise GolfError(f"{outputs[0]} or {outputs[1].name} already exists; pass a new --out prefix")
    # sentencepiece turns exceptions from the iterator into RuntimeError; keep ours to re-raise.
    errors: list[BaseException] = []

    def texts() -> Iterator[str]:
        try:
            docs = itertools.islice(iter_documents(doc_paths), max_docs)
            for text in tqdm(docs, desc="tokenizer docs", unit="doc",
                             disable=None if progress else True):
                text = text.replace("\x00", " ").strip()
                if text:
                    yield text
        except BaseException as exc:
            errors.append(exc)
            raise

    # Trained beside the target and moved in only when both files are complete and the tokenizer is
    # one golf can count bytes for: a refused or failed training leaves nothing behind.
    with staged_output(prefix.parent) as stage:
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=texts(), model_prefix=str(stage / prefix.name), model_type="bpe",
                vocab_size=vocab_size, character_coverage=0.999, byte_fallback=True, split_digits=True,
                normalization_rule_name="nmt_nfkc", add_dummy_prefix=False,
                pad_id=0, bos_id=1, eos_id=2, unk_id=3, hard_vocab_limit=False,
                minloglevel=0 if progress else 2)
        except RuntimeError as exc:
            if errors:
                raise errors[0] from None
            detail = str(exc).splitlines()[0].split("] ")[-1]
            raise GolfError(f"{prefix}: sentencepiece training failed: {detail}") from None
        refusal = classify_tokenizer(load_tokenizer(stage / f"{prefix.name}.model")).refusal
        if refusal:
            raise GolfError(f"{prefix}: the trained {refusal}")
    return outputs[0]
