"""`golf data fetch` against a fake Hugging Face hub on disk (file:// URLs); never the network."""

from __future__ import annotations

import argparse
import io
import json
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from golf.commands import data as data_cmd
from golf.data import read_shard, write_shard
from golf.errors import GolfError
from golf.fetch import fetch

REPO_ID = "someone/parameter-golf"
DATASET = "fineweb10B_sp1024"
MANIFEST = {
    "datasets": [{"name": DATASET, "tokenizer_name": "sp_bpe_1024", "stats": {"files_train": 3, "files_val": 1}}],
    "tokenizers": [{"name": "sp_bpe_1024", "model_path": "tokenizers/fineweb_1024_bpe.model",
                    "vocab_path": "tokenizers/fineweb_1024_bpe.vocab"}],
}


def make_hub(tmp_path: Path, repo_id: str = REPO_ID, root: str = "datasets", manifest: dict = MANIFEST) -> Path:
    """The hub's resolve/main tree: {base}/datasets/{repo}/resolve/main/{root}/{path}."""
    base = tmp_path / "hub"
    top = base / "datasets" / repo_id / "resolve" / "main" / root
    shards = top / "datasets" / DATASET
    shards.mkdir(parents=True)
    (top / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    write_shard(shards / "fineweb_val_000000.bin", np.arange(50))
    for i in range(3):
        write_shard(shards / f"fineweb_train_{i:06d}.bin", np.arange(100) + 1000 * i)
    (top / "tokenizers").mkdir()
    (top / "tokenizers" / "fineweb_1024_bpe.model").write_bytes(b"model bytes")
    (top / "tokenizers" / "fineweb_1024_bpe.vocab").write_bytes(b"vocab bytes")
    (top / "docs_selected.jsonl").write_text('{"text": "doc"}\n', encoding="utf-8")
    (top / "docs_selected.source_manifest.json").write_text('{"num_docs": 1}', encoding="utf-8")
    return base


class RecordingOpener:
    def __init__(self) -> None:
        self.urls: list[str] = []

    def __call__(self, url: str):
        self.urls.append(url)
        return urllib.request.urlopen(url)


def hub_file(hub: Path, path: str) -> Path:
    return hub / "datasets" / REPO_ID / "resolve" / "main" / "datasets" / path


def test_fetch_downloads_the_requested_files(tmp_path):
    hub, out = make_hub(tmp_path), tmp_path / "data"
    opener = RecordingOpener()
    summary = fetch("sp1024", 2, out, repo_id=REPO_ID, base_url=f"file://{hub}", progress=False, opener=opener)
    assert opener.urls[0] == f"file://{hub}/datasets/{REPO_ID}/resolve/main/datasets/manifest.json"
    shards = out / "datasets" / DATASET
    assert sorted(p.name for p in shards.iterdir()) == [
        "fineweb_train_000000.bin", "fineweb_train_000001.bin", "fineweb_val_000000.bin"]
    assert np.array_equal(read_shard(shards / "fineweb_train_000001.bin"), np.arange(100) + 1000)
    assert (out / "tokenizers" / "fineweb_1024_bpe.model").read_bytes() == b"model bytes"
    assert (out / "tokenizers" / "fineweb_1024_bpe.vocab").read_bytes() == b"vocab bytes"
    assert json.loads((out / "manifest.json").read_text()) == MANIFEST
    assert not (out / "docs_selected.jsonl").exists()
    assert summary["data_path"] == str(shards) and summary["val_shards"] == 1
    assert len(summary["downloaded"]) == 5 and summary["skipped"] == []
    assert summary["bytes_downloaded"] == (1024 + 100) + 2 * (1024 + 200) + len(b"model bytes") * 2
    assert not list(out.rglob("*.part"))


def test_fetch_skips_complete_files_and_repairs_broken_ones(tmp_path):
    hub, out = make_hub(tmp_path), tmp_path / "data"
    fetch("sp1024", 2, out, repo_id=REPO_ID, base_url=f"file://{hub}", progress=False)
    opener = RecordingOpener()
    again = fetch("sp1024", 2, out, repo_id=REPO_ID, base_url=f"file://{hub}", progress=False, opener=opener)
    assert len(opener.urls) == 1 and opener.urls[0].endswith("/manifest.json")  # only the manifest
    assert again["downloaded"] == [] and len(again["skipped"]) == 5

    broken = out / "datasets" / DATASET / "fineweb_train_000000.bin"
    broken.write_bytes(broken.read_bytes()[:-10])  # e.g. copied in by hand and cut short
    repaired = fetch("sp1024", 3, out, repo_id=REPO_ID, base_url=f"file://{hub}", progress=False)
    assert [Path(p).name for p in repaired["downloaded"]] == ["fineweb_train_000000.bin", "fineweb_train_000002.bin"]
    assert len(read_shard(broken)) == 100


def test_fetch_rejects_a_corrupt_shard(tmp_path):
    hub, out = make_hub(tmp_path), tmp_path / "data"
    bad = hub_file(hub, f"datasets/{DATASET}/fineweb_val_000000.bin")
    bad.write_bytes(bad.read_bytes()[:-1])
    with pytest.raises(GolfError, match=r"corrupt shard downloaded from file://.*fineweb_val_000000\.bin: truncated"):
        fetch("sp1024", 1, out, repo_id=REPO_ID, base_url=f"file://{hub}", progress=False)
    shards = out / "datasets" / DATASET
    assert list(shards.iterdir()) == []  # neither the shard nor its temp file


def test_fetch_errors_name_the_problem(tmp_path):
    hub, out = make_hub(tmp_path), tmp_path / "data"
    kwargs = dict(repo_id=REPO_ID, base_url=f"file://{hub}", progress=False)
    with pytest.raises(GolfError, match="sp1024 has only 3 train shards in .*manifest.json, requested 4"):
        fetch("sp1024", 4, out, **kwargs)
    with pytest.raises(GolfError, match=r"has no dataset fineweb10B_sp4096 \(it lists: fineweb10B_sp1024\)"):
        fetch("sp4096", 1, out, **kwargs)
    with pytest.raises(GolfError, match="unknown variant 'gpt2'"):
        fetch("gpt2", 1, out, **kwargs)
    hub_file(hub, "tokenizers/fineweb_1024_bpe.vocab").unlink()
    with pytest.raises(GolfError, match=r"download failed: file://.*/fineweb_1024_bpe\.vocab"):
        fetch("sp1024", 0, out, **kwargs)
    with pytest.raises(GolfError, match=r"download failed: file://.*/other/repo/resolve/main/datasets/manifest"):
        fetch("sp1024", 0, out, **{**kwargs, "repo_id": "other/repo"})


def test_fetch_refuses_paths_escaping_the_output_folder(tmp_path):
    evil = json.loads(json.dumps(MANIFEST))
    evil["tokenizers"][0]["model_path"] = "../../outside.model"
    hub = make_hub(tmp_path, manifest=evil)
    with pytest.raises(GolfError, match="refusing unsafe path '../../outside.model'"):
        fetch("sp1024", 0, tmp_path / "data", repo_id=REPO_ID, base_url=f"file://{hub}", progress=False)


def test_fetch_detects_a_cut_short_transfer(tmp_path):
    hub, out = make_hub(tmp_path), tmp_path / "data"

    def short_tokenizer(url: str):
        response = urllib.request.urlopen(url)
        if not url.endswith(".model"):
            return response
        body = response.read()
        fake = io.BytesIO(body[:-3])
        fake.headers = {"Content-Length": str(len(body))}
        return fake

    with pytest.raises(GolfError, match=r"fineweb_1024_bpe\.model stopped early: 8 of 11 bytes"):
        fetch("sp1024", 0, out, repo_id=REPO_ID, base_url=f"file://{hub}", progress=False, opener=short_tokenizer)
    assert not (out / "tokenizers" / "fineweb_1024_bpe.model").exists()


def test_fetch_env_overrides_and_docs(tmp_path, monkeypatch):
    hub, out = make_hub(tmp_path, repo_id="env/repo", root="mirror"), tmp_path / "data"
    monkeypatch.setenv("MATCHED_FINEWEB_REPO_ID", "env/repo")
    monkeypatch.setenv("MATCHED_FINEWEB_REMOTE_ROOT_PREFIX", "mirror")
    summary = fetch("sp1024", 0, out, base_url=f"file://{hub}", with_docs=True, progress=False)
    assert summary["repo_id"] == "env/repo" and summary["remote_root"] == "mirror"
    assert (out / "docs_selected.jsonl").read_text() == '{"text": "doc"}\n'
    assert (out / "docs_selected.source_manifest.json").is_file()
    assert (out / "datasets" / DATASET / "fineweb_val_000000.bin").is_file()


def test_cli_fetch(tmp_path, capsys):
    hub, out = make_hub(tmp_path), tmp_path / "data"
    parser = argparse.ArgumentParser(prog="golf")
    data_cmd.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["data", "fetch", "--train-shards", "1", "--out", str(out), "--repo-id", REPO_ID,
                              "--base-url", f"file://{hub}", "--json"])
    assert args.func(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["train_shards"] == 1 and len(summary["downloaded"]) == 4
    assert summary["tokenizer_files"][0] == str(out / "tokenizers" / "fineweb_1024_bpe.model")
