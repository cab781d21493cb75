"""Tiny finished runs for the `golf pack` tests: a real artifact, a result.json and a train.log in
the trainer's format, consistent with the repo's current sources (as a real run would be)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

import quant
from conftest import REPO
from golf import embedded, models
from golf.score import score_artifact
from golf.selfcontained import pack, read_sources

TINY = dict(vocab_size=1024, num_layers=1, model_dim=32, num_heads=4, num_kv_heads=2)
VAL_MAX_TOKENS = 4096


def packed_now() -> tuple[bytes, str]:
    sources = read_sources(REPO / "train_gpt.py")
    return pack(sources), sources.sha256()


def trainer_log(r: dict) -> str:
    """The lines of a train.log that golf pack and --check read, as train_gpt.py writes them."""
    return "\n".join([
        f"run_id:{r['run_id']} run_dir:{r['run_id']}",
        f"source_sha256:{r['source_sha256']} files:29 packed:0",
        "hardware cpu:x86_64 cores:2 torch_threads:1 world_size:1",
        f"embed_lr:0.05 head_lr:0.008 matrix_lr:0.04 scalar_lr:0.04 seed:{r['seed']}",
        f"step:{r['steps']}/{r['steps']} val_loss:{r['val_loss']:.4f} val_bpb:{r['val_bpb']:.4f} "
        f"train_time:{r['train_time_ms']}ms step_avg:10.00ms",
        f"Serialized model int8+zstd-22: {r['bytes_model']} bytes",
        f"Code size: {r['bytes_code']} bytes (self-contained train_gpt.py: 29 files, 1 bytes of source)",
        f"Total submission size int8+zstd-22: {r['bytes_total']} bytes (cap 16000000, headroom 1)",
        f"final_int8_zstd22_roundtrip val_loss:{r['val_loss']:.4f} val_bpb:{r['val_bpb']:.4f} eval_time:1ms label:exact",
        f"final_int8_zstd22_roundtrip_exact val_loss:{r['val_loss']:.8f} val_bpb:{r['val_bpb']:.8f}", ""])


def make_run(path: Path, seed: int, *, code: tuple[bytes, str] | None = None, **overrides) -> Path:
    """A finished run of a tiny model with seed `seed`, scored for real on the embedded val sample."""
    packed, sha = code or packed_now()
    path.mkdir(parents=True)
    torch.manual_seed(seed)
    model = models.build("ar", TINY)
    meta = {"model": {"variant": "ar", "config": model.config_dict()},
            "tokenizer": {"name": "fineweb_1024_bpe.model", "sha256": embedded.EMBEDDED_TOKENIZER_SHA256,
                          "vocab_size": 1024}, "eval": {"seq_len": 64}}
    quant.write_artifact(path / "model.golf", model.state_dict(), rule="int8", roles=model.checked_roles(),
                         meta=meta)
    scored = score_artifact(path / "model.golf", data=embedded.shards_dir(), tokenizer=embedded.tokenizer_path(),
                            max_tokens=VAL_MAX_TOKENS, progress=False)
    size = (path / "model.golf").stat().st_size
    result = {
        "artifact": "model.golf", "val_loss": scored["val_loss"], "val_bpb": scored["val_bpb"], "label": "exact",
        "tokens": scored["tokens"], "bytes": scored["bytes"], "bytes_model": size, "bytes_code": len(packed),
        "bytes_total": size + len(packed), "steps": 4, "train_time_ms": 1000, "seed": seed, "run_id": path.name,
        "world_size": 1, "grad_accum_steps": 1, "device": "cpu", "quant": "int8", "compressor": "zstd-22",
        "model": "ar", "model_params": sum(p.numel() for p in model.parameters()),
        "model_config": model.config_dict(), "source_sha256": sha, "packed_code": False,
        "config": {"seed": seed, "run_id": path.name, "run_dir": str(path), "data_path": "embedded",
                   "val_max_tokens": VAL_MAX_TOKENS},
        "env": {"MODEL_DIM": "32", "NUM_LAYERS": "1", "SEED": str(seed)},
        "versions": {"python": "3.11", "torch": torch.__version__, "golf": "0.1.0"}, **overrides}
    (path / "result.json").write_text(json.dumps(result))
    (path / "train.log").write_text(trainer_log(result))
    return path
