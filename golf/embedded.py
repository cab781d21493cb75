"""The default data shipped inside the package, so a fresh clone trains and scores offline.

`golf/assets/` holds the challenge sp1024 tokenizer, 200 real FineWeb documents and two shards
built from them (see golf/assets/README.md for provenance and licences). The sha256s below are
the ones recorded when the files were gathered; `file_sha256` lets callers check them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from golf.errors import GolfError

# Packed into a self-contained train_gpt.py (golf.selfcontained), golf has no folder and no
# __file__: there are no embedded files then, and `_asset` says so when one is asked for.
ASSETS_DIR = Path(__file__).resolve().parent / "assets" if "__file__" in globals() else None

# Relative path under ASSETS_DIR -> sha256, as listed in golf/assets/README.md.
EMBEDDED_FILES: dict[str, str] = {
    "fineweb_1024_bpe.model": "4f5e8adb109c66b4886963bc75a7befd73bda36d27fd7102df8e9e66503b0e2a",
    "fineweb_1024_bpe.vocab": "f0105177510799723c8618f7537c04f68e9e456e14abad38c3b0647f37eb6296",
    "fineweb_challenge_docs_200.jsonl": "d20c996a4eed293d9ae4fff9c0aec8c1b49a3190895f2a146a5f70695a750f22",
    "fineweb10B_sp1024_sample/fineweb_val_000000.bin":
        "36269b939136e536eabf6e3a9bba01f2ccbc64bd32b438aaf1f583406f7fa033",
    "fineweb10B_sp1024_sample/fineweb_train_000000.bin":
        "a7559e1ee4f89d4cbf860cf0ccd6f49fd267a7dc5a5e23701b600696f0f61fdd",
}
EMBEDDED_TOKENIZER_SHA256 = EMBEDDED_FILES["fineweb_1024_bpe.model"]

_SHARDS = "fineweb10B_sp1024_sample"


def _asset(relative: str) -> Path:
    if ASSETS_DIR is None:
        raise GolfError("this self-contained train_gpt.py has no embedded data; set DATA_PATH and TOKENIZER_PATH")
    path = ASSETS_DIR / relative
    if not path.is_file():
        raise GolfError(f"embedded data file {path} is missing; the golf install is broken, reinstall it")
    return path


def tokenizer_path() -> Path:
    """The challenge sp1024 SentencePiece model (fineweb_1024_bpe.model)."""
    return _asset("fineweb_1024_bpe.model")


def docs_path() -> Path:
    """200 FineWeb documents, one {"text": ...} JSON object per line (docs 0-49 are the val shard)."""
    return _asset("fineweb_challenge_docs_200.jsonl")


def shards_dir() -> Path:
    """Folder holding fineweb_val_000000.bin and fineweb_train_000000.bin in the challenge layout."""
    _asset(f"{_SHARDS}/fineweb_val_000000.bin")
    return _asset(f"{_SHARDS}/fineweb_train_000000.bin").parent


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks so multi-GB shards don't load into memory."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    except OSError as exc:
        raise GolfError(f"cannot read {path}: {exc.strerror}") from None
    return digest.hexdigest()
