"""Per-token byte sidecars: `fineweb_val_bytes_*.bin` beside the val shards.

A lossless text transform applied before tokenizing (CaseOps: an upper-case ASCII letter becomes
a private-use sentinel + the lower-case letter) changes what the tokens decode to, so the byte
table counts the transformed text, sentinels at 3 UTF-8 bytes each, not the text being
compressed: openai/parameter-golf #2138 reported a bpb 8.9 % too low that way. Such datasets
ship, for every val shard `fineweb_val_N.bin`, a sidecar `fineweb_val_bytes_N.bin` in the same
shard format whose i-th value is the original UTF-8 bytes of token i (0 for a BOS). Where the
sidecars are there, golf divides by their bytes; their absence leaves the byte table in charge.

`audit_sidecar` checks a sidecar against the text: every BOS is worth 0 bytes, and every whole
document's sidecar total equals the UTF-8 length of its decoded text with private-use characters
(the transforms' sentinels) dropped, "▁" read as a space. That is exact for datasets without a
transform and for transforms that only add sentinels and change ASCII case (CaseOps); a
mismatch names the document, for a person to judge.
"""

from __future__ import annotations

import dataclasses
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import sentencepiece as spm
import torch

from golf.bpb import SPACE, ByteTable, target_bytes
from golf.data import BYTE_SIDECAR_PREFIX, read_shard, shard_token_count
from golf.errors import GolfError

VAL_PREFIX = "fineweb_val_"


def sidecar_paths(val_files: Sequence[str | Path]) -> list[Path] | None:
    """The sidecar of each val shard (same folder, `fineweb_val_bytes_` + the shard's suffix), or
    None when no shard has one. Some with and some without is an error: a partial denominator."""
    paths = []
    for f in map(Path, val_files):
        if not f.name.startswith(VAL_PREFIX):
            return None  # shards named otherwise (a glob over custom names) have no sidecar convention
        paths.append(f.with_name(BYTE_SIDECAR_PREFIX + f.name[len(VAL_PREFIX):]))
    present = [p.is_file() for p in paths]
    if not any(present):
        return None
    if not all(present):
        missing = [p.name for p, ok in zip(paths, present) if not ok]
        raise GolfError(f"byte sidecars found beside some val shards but not {', '.join(missing[:3])}"
                        f"{' …' if len(missing) > 3 else ''}: every shard needs one, or none")
    return paths


def load_sidecar(val_files: Sequence[str | Path], n_tokens: int) -> torch.Tensor | None:
    """int32 bytes per val stream position (the first `n_tokens`), or None without sidecars.

    Each sidecar must hold exactly as many values as its shard holds tokens."""
    paths = sidecar_paths(val_files)
    if paths is None:
        return None
    parts = []
    for shard, sidecar in zip(map(Path, val_files), paths):
        values = read_shard(sidecar)
        if values.size != shard_token_count(shard):
            raise GolfError(f"{sidecar}: {values.size} byte counts for the {shard_token_count(shard)} tokens of "
                            f"{shard.name}; a sidecar needs one count per token")
        parts.append(values)
    stream = np.concatenate(parts)[:n_tokens]
    if stream.size < n_tokens:
        raise GolfError(f"byte sidecars cover {stream.size} tokens, the val stream has {n_tokens}")
    return torch.from_numpy(stream.astype(np.int32))


def text_bytes(decoded: str) -> int:
    """UTF-8 bytes of decoded text without private-use characters (a transform's sentinels)."""
    kept = "".join(ch for ch in decoded if unicodedata.category(ch) != "Co")
    return len(kept.replace(SPACE, " ").encode("utf-8"))


@dataclasses.dataclass
class SidecarAudit:
    targets: int
    sidecar_bytes: int  # what bpb divides by
    table_bytes: int  # what the byte table would credit the same targets
    bos_with_bytes: int  # BOS targets the sidecar credits with bytes (must be 0)
    docs_checked: int
    docs_failed: int
    partial: int  # documents cut by the stream's ends: skipped
    mismatches: list[dict[str, int]]  # the first few: doc, sidecar_bytes, text_bytes
    ok: bool


def audit_sidecar(tokens: torch.Tensor, sidecar: torch.Tensor, sp: spm.SentencePieceProcessor,
                  table: ByteTable, *, max_mismatches: int = 5) -> SidecarAudit:
    """Check `sidecar` (bytes per position of the 1-D stream `tokens`) against the decoded text."""
    ids = tokens.cpu().numpy().astype(np.int64)
    credit = sidecar.cpu().numpy().astype(np.int64)[:ids.size]
    bos = sp.bos_id()
    if bos < 0:
        raise GolfError("tokenizer has no BOS piece; a sidecar audit needs documents")
    cuts = np.flatnonzero(ids == bos)
    bos_with_bytes = int((credit[cuts[cuts > 0]] != 0).sum())
    checked = failed = 0
    mismatches: list[dict[str, int]] = []
    docs = [(int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:])]  # doc = tokens a+1 .. b-1, between BOS a and b
    texts = sp.decode([ids[a + 1:b].tolist() for a, b in docs]) if docs else []
    for j, ((a, b), text) in enumerate(zip(docs, texts)):
        have, want = int(credit[a + 1:b].sum()), text_bytes(text)
        checked += 1
        if have != want:
            failed += 1
            if len(mismatches) < max_mismatches:
                mismatches.append({"doc": j, "sidecar_bytes": have, "text_bytes": want})
    stream = torch.from_numpy(ids)
    table_total = int(target_bytes(table.to("cpu"), stream[:-1], stream[1:]).sum()) if ids.size > 1 else 0
    return SidecarAudit(targets=max(ids.size - 1, 0), sidecar_bytes=int(credit[1:].sum()), table_bytes=table_total,
                        bos_with_bytes=bos_with_bytes, docs_checked=checked, docs_failed=failed,
                        partial=1 if not cuts.size else 1 + int(cuts[0] > 0),  # before the first BOS, after the last
                        mismatches=mismatches, ok=checked > 0 and not failed and not bos_with_bytes)
