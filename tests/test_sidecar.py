"""Byte sidecars (`fineweb_val_bytes_*.bin`): never taken for token shards, used for bpb where
present, checked against the text by the audit, refused when they do not match their shards."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from golf import embedded
from golf.bpb import target_bytes
from golf.cli import main
from golf.data import find_shards, load_val_tokens, read_shard, write_shard
from golf.errors import GolfError
from golf.sidecar import audit_sidecar, load_sidecar
from test_cli import write_tiny_artifact
from test_sliding import sp, table  # noqa: F401  (fixtures)

PRIVATE = "\ue001"  # a CaseOps-style sentinel: "capitalize the next letter"


def table_credit(table, tokens: np.ndarray) -> np.ndarray:
    """What the byte table credits each position (0 for the first): an exact sidecar for untransformed text."""
    t = torch.from_numpy(tokens.astype(np.int64))
    return np.concatenate(([0], target_bytes(table, t[:-1], t[1:]).numpy())).astype(np.uint16)


@pytest.fixture
def shards(tmp_path, table):
    """Two val shards of the embedded sample, each with an exact sidecar, and a train shard."""
    tokens = read_shard(find_shards(embedded.shards_dir(), "val")[0])
    tokens = tokens[np.flatnonzero(tokens == 1)[1]:][:20000]  # from the second document: several whole ones
    for i, part in enumerate((tokens[:12000], tokens[12000:])):
        write_shard(tmp_path / f"fineweb_val_{i:06d}.bin", part)
    credit = table_credit(table, tokens)
    write_shard(tmp_path / "fineweb_val_bytes_000000.bin", credit[:12000])
    write_shard(tmp_path / "fineweb_val_bytes_000001.bin", credit[12000:])
    write_shard(tmp_path / "fineweb_train_000000.bin", tokens)
    return tmp_path


def test_token_shard_globs_never_match_sidecars(shards):
    names = ["fineweb_val_000000.bin", "fineweb_val_000001.bin"]
    assert [p.name for p in find_shards(shards, "val")] == names
    assert [p.name for p in find_shards(str(shards / "fineweb_val_*.bin"), "val")] == names
    with pytest.raises(GolfError, match="byte sidecars fineweb_val_bytes_.*bin are not"):
        find_shards(str(shards / "fineweb_val_bytes_*.bin"), "val")


def test_sidecars_pair_with_their_shards(shards, table):
    files = find_shards(shards, "val")
    side = load_sidecar(files, 5000)
    stream = load_val_tokens(files, 1, max_tokens=5000)
    assert side.numel() == 5000 and np.array_equal(side.numpy()[1:], table_credit(table, stream.numpy())[1:])
    (shards / "fineweb_val_bytes_000001.bin").unlink()
    with pytest.raises(GolfError, match="not fineweb_val_bytes_000001.bin"):
        load_sidecar(files, 5000)
    write_shard(shards / "fineweb_val_bytes_000001.bin", np.ones(10, dtype=np.uint16))
    with pytest.raises(GolfError, match="10 byte counts for the 8000 tokens"):
        load_sidecar(files, 5000)
    for p in shards.glob("fineweb_val_bytes_*"):
        p.unlink()
    assert load_sidecar(files, 5000) is None


def test_the_audit_checks_a_sidecar_against_the_text(shards, sp, table):
    files = find_shards(shards, "val")
    stream = load_val_tokens(files, 1)
    side = load_sidecar(files, stream.numel())
    good = audit_sidecar(stream, side, sp, table)
    assert good.ok and good.docs_checked > 0 and good.sidecar_bytes == good.table_bytes
    off = side.clone()
    off[200] += 1
    bad = audit_sidecar(stream, off, sp, table)
    first = bad.mismatches[0]
    assert not bad.ok and bad.docs_failed == 1 and first["sidecar_bytes"] == first["text_bytes"] + 1
    bos = side.clone()
    bos[int(np.flatnonzero(stream.numpy() == sp.bos_id())[1])] = 3
    assert audit_sidecar(stream, bos, sp, table).bos_with_bytes == 1


def test_a_transformed_text_is_scored_on_its_original_bytes(tmp_path, sp, table, capsys):
    # A CaseOps-like transform: each capital becomes a private-use sentinel + the lower-case letter.
    # The sentinel is 3 byte-fallback pieces the table credits 3 bytes; the original text had none.
    docs = ["The Cat sat On the Mat.", "Another Day, another Dollar.", "Paris Is in France."] * 40
    ids, credit = [], []
    for doc in docs:
        transformed = "".join(PRIVATE + c.lower() if c.isupper() else c for c in doc)
        pieces = sp.encode(transformed)
        doc_ids = [sp.bos_id()] + pieces
        per_token = table_credit(table, np.array(doc_ids)).astype(np.int64)
        sentinel = np.array([sp.is_byte(i) for i in doc_ids])  # only the sentinels fall back to bytes here
        per_token[sentinel] = 0
        ids += doc_ids
        credit += per_token.tolist()
    write_shard(tmp_path / "fineweb_val_000000.bin", ids)
    write_shard(tmp_path / "fineweb_val_bytes_000000.bin", credit)
    stream = torch.tensor(ids)
    audit = audit_sidecar(stream, torch.tensor(credit), sp, table)
    assert audit.ok and audit.sidecar_bytes == sum(len(d.encode()) for d in docs) < audit.table_bytes

    artifact = write_tiny_artifact(tmp_path / "m.golf")
    args = ["score", str(artifact), "--data", str(tmp_path), "--json", "--audit", "--no-progress"]
    assert main(args) == 0
    with_sidecar = json.loads(capsys.readouterr().out)
    (tmp_path / "fineweb_val_bytes_000000.bin").unlink()
    assert main(args) == 0
    without = json.loads(capsys.readouterr().out)
    assert with_sidecar["bytes_source"] == "sidecar" and without["bytes_source"] == "table"
    assert with_sidecar["sidecar_audit"]["ok"] and with_sidecar["tokens"] == without["tokens"]
    assert with_sidecar["bytes"] < without["bytes"] and with_sidecar["val_bpb"] > without["val_bpb"]
