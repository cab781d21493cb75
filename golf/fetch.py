"""Download the official cached shards and tokenizer from the Hugging Face hub, stdlib only.

Mirrors the challenge's `data/cached_challenge_fineweb.py`:
  * the hub dataset repo is `willdepueoai/parameter-golf` (env MATCHED_FINEWEB_REPO_ID), and every
    remote path sits under the root `datasets` (env MATCHED_FINEWEB_REMOTE_ROOT_PREFIX);
  * `<root>/manifest.json` lists `datasets` ({name: fineweb10B_<variant>, tokenizer_name,
    stats: {files_train, files_val}}) and `tokenizers` ({name, model_path / vocab_path / path},
    paths relative to the root);
  * shards are `<root>/datasets/fineweb10B_<variant>/fineweb_{val,train}_%06d.bin`: all val
    shards and train shards 0..N-1; `--with-docs` adds `<root>/docs_selected.jsonl` and its
    `docs_selected.source_manifest.json`;
  * locally `datasets/...` lands in `<out>/datasets/...`, `tokenizers/...` in `<out>/tokenizers/...`,
    anything else (manifest, docs) directly in `<out>/`.
Unlike the official script the manifest is always fetched afresh: a stale one from another repo
silently picks the wrong shard counts and tokenizer.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from http.client import HTTPException
from pathlib import Path
from typing import IO, Any

from tqdm import tqdm

from golf import __version__
from golf.data import ShardError, atomic_writer, shard_token_count
from golf.errors import GolfError

DEFAULT_REPO_ID = "willdepueoai/parameter-golf"
DEFAULT_REMOTE_ROOT = "datasets"
CHUNK_BYTES = 1 << 20
TIMEOUT_S = 60.0
Opener = Callable[[str], IO[bytes]]


def _urlopen(url: str) -> IO[bytes]:
    request = urllib.request.Request(url, headers={"User-Agent": f"golf/{__version__}"})
    return urllib.request.urlopen(request, timeout=TIMEOUT_S)


def dataset_dir_for_variant(variant: str) -> str:
    """`sp1024` -> `fineweb10B_sp1024`; the official names are byte260 and sp<VOCAB_SIZE>."""
    if variant == "byte260" or (variant.startswith("sp") and variant[2:].isdigit()):
        return f"fineweb10B_{variant}"
    raise GolfError(f"unknown variant {variant!r}: expected sp<VOCAB_SIZE> (e.g. sp1024) or byte260")


def local_path(out_root: Path, remote_path: str) -> Path:
    """Where a root-relative remote path lands: datasets/ and tokenizers/ keep their subfolders."""
    parts = Path(remote_path).parts
    # Paths come from the downloaded manifest: never let one escape the output folder.
    if not parts or Path(remote_path).is_absolute() or ".." in parts:
        raise GolfError(f"refusing unsafe path {remote_path!r} from the hub manifest")
    return out_root.joinpath(*parts)


class _Hub:
    """One hub dataset repo reached through `opener`; every failure names its URL."""

    def __init__(self, base_url: str, repo_id: str, remote_root: str, opener: Opener, progress: bool) -> None:
        self.prefix = f"{base_url.rstrip('/')}/datasets/{repo_id}/resolve/main/"
        self.remote_root = remote_root.strip("/")
        self.opener = opener
        self.progress = progress

    def url(self, path: str) -> str:
        full = f"{self.remote_root}/{path}" if self.remote_root else path
        return self.prefix + urllib.parse.quote(full)

    def download(self, path: str, dest: Path) -> int:
        """Stream `path` into `dest` through a temp file; returns the byte count."""
        url = self.url(path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self.opener(url) as response, atomic_writer(dest) as out:
                length = getattr(response, "headers", {}).get("Content-Length")  # absent for plain files
                total = int(length) if length else None
                got = 0
                with tqdm(total=total, desc=dest.name, unit="B", unit_scale=True, unit_divisor=1024,
                          leave=False, disable=None if self.progress else True) as bar:
                    while chunk := response.read(CHUNK_BYTES):
                        out.write(chunk)
                        got += len(chunk)
                        bar.update(len(chunk))
                if total is not None and got != total:
                    raise GolfError(f"download of {url} stopped early: {got} of {total} bytes")
                if dest.suffix == ".bin":
                    # Checked before the rename, so a corrupt shard never appears under its real name.
                    out.flush()
                    _check_shard(Path(out.name), url)
        except urllib.error.HTTPError as exc:
            raise GolfError(f"download failed: {url}: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, HTTPException, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise GolfError(f"download failed: {url}: {reason}") from None
        return got


def _check_shard(path: Path, url: str) -> None:
    try:
        shard_token_count(path)
    except ShardError as exc:
        raise GolfError(f"corrupt shard downloaded from {url}: {str(exc).split(': ', 1)[-1]}") from None


def _is_complete(path: Path) -> bool:
    """Downloads are atomic, so a file that exists is whole; a shard must also match its header."""
    if path.suffix != ".bin":
        return path.is_file()
    try:
        shard_token_count(path)
    except ShardError:
        return False
    return True


def _select(manifest: dict[str, Any], variant: str, train_shards: int, where: str) -> tuple[int, list[str]]:
    """(val shard count, tokenizer artifact paths) for `variant`, checked against the manifest."""
    dataset_name = dataset_dir_for_variant(variant)
    datasets = manifest.get("datasets") or []
    entry = next((d for d in datasets if d.get("name") == dataset_name), None)
    if entry is None:
        names = ", ".join(str(d.get("name")) for d in datasets) or "none"
        raise GolfError(f"{where} has no dataset {dataset_name} (it lists: {names})")
    stats = entry.get("stats") or {}
    max_train, val_shards = int(stats.get("files_train", 0)), int(stats.get("files_val", 0))
    if train_shards > max_train:
        raise GolfError(f"{variant} has only {max_train} train shards in {where}, requested {train_shards}")
    tok_name = entry.get("tokenizer_name")
    tok = next((t for t in manifest.get("tokenizers") or [] if t.get("name") == tok_name), None)
    artifacts = [str(tok[k]) for k in ("model_path", "vocab_path", "path") if tok and tok.get(k)]
    if not artifacts:
        raise GolfError(f"{where} has no downloadable files for tokenizer {tok_name!r} of {dataset_name}")
    return val_shards, artifacts


def fetch(variant: str, train_shards: int, out_root: Path, *, repo_id: str | None = None,
          base_url: str = "https://huggingface.co", with_docs: bool = False, progress: bool = True,
          opener: Opener | None = None) -> dict[str, Any]:
    """Download the manifest, val + first `train_shards` train shards and the tokenizer of `variant`.

    Files already present and complete are skipped. `base_url` may be a file:// URL (offline mirror).
    """
    if train_shards < 0:
        raise GolfError(f"train_shards must be >= 0, got {train_shards}")
    out_root = Path(out_root)
    repo_id = repo_id or os.environ.get("MATCHED_FINEWEB_REPO_ID", DEFAULT_REPO_ID)
    remote_root = os.environ.get("MATCHED_FINEWEB_REMOTE_ROOT_PREFIX", DEFAULT_REMOTE_ROOT)
    hub = _Hub(base_url, repo_id, remote_root, opener or _urlopen, progress)
    dataset_dir = f"datasets/{dataset_dir_for_variant(variant)}"

    manifest_path = local_path(out_root, "manifest.json")
    hub.download("manifest.json", manifest_path)
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise GolfError(f"{hub.url('manifest.json')}: manifest is not valid JSON ({exc})") from None
    val_shards, tokenizer_files = _select(manifest, variant, train_shards, hub.url("manifest.json"))

    wanted = [f"{dataset_dir}/fineweb_val_{i:06d}.bin" for i in range(val_shards)]
    wanted += [f"{dataset_dir}/fineweb_train_{i:06d}.bin" for i in range(train_shards)]
    wanted += tokenizer_files
    if with_docs:
        wanted += ["docs_selected.jsonl", "docs_selected.source_manifest.json"]
    downloaded: list[str] = []
    skipped: list[str] = []
    n_bytes = 0
    for i, path in enumerate(wanted, start=1):
        dest = local_path(out_root, path)
        if _is_complete(dest):
            skipped.append(str(dest))
            continue
        if progress:
            print(f"[{i}/{len(wanted)}] {hub.url(path)}", file=sys.stderr)
        n_bytes += hub.download(path, dest)
        downloaded.append(str(dest))
    return {"variant": variant, "repo_id": repo_id, "remote_root": remote_root, "manifest": str(manifest_path),
            "data_path": str(local_path(out_root, dataset_dir)),
            "tokenizer_files": [str(local_path(out_root, p)) for p in tokenizer_files],
            "val_shards": val_shards, "train_shards": train_shards,
            "downloaded": downloaded, "skipped": skipped, "bytes_downloaded": n_bytes}
