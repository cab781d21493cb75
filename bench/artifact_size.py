"""Artifact bytes per parameter: golf's int8 artifact under each compressor, against the
official container (a torch.save'd dict of the same int8 tensors, zlib-9) in the same run.

Takes a run folder written by train_gpt.py (it needs model_raw.golf, the fp32 weights) and
also reports the int8 roundtrip val_bpb gap on the embedded val split.

    python bench/artifact_size.py runs/demo-...
"""

from __future__ import annotations

import argparse
import io
import json
import zlib
from pathlib import Path

import torch

import quant
from golf import embedded
from golf.bpb import build_byte_table, load_tokenizer
from golf.data import find_shards, load_val_tokens, val_windows
from golf.models import roles_from_meta
from golf.score import evaluate, model_from_artifact


def official_container_bytes(state: dict[str, torch.Tensor], roles: dict[str, str]) -> int:
    """Size of the baseline's format: the quantized parts in a dict, torch.save, zlib level 9."""
    parts = {name: q.enc.parts for name, q in quant.quantize(state, "int8", roles=roles).items()}
    buf = io.BytesIO()
    torch.save({"__quant_format__": "int8_clean_per_row_v1", "parts": parts}, buf)
    return len(zlib.compress(buf.getvalue(), 9))


def val_bpb(meta: dict, state: dict[str, torch.Tensor]) -> float:
    model = model_from_artifact(meta, state)
    seq_len = meta["eval"]["seq_len"]
    table = build_byte_table(load_tokenizer(embedded.tokenizer_path()), model.vocab_size)
    windows = val_windows(load_val_tokens(find_shards(embedded.shards_dir(), "val"), seq_len), seq_len)
    return evaluate(model, windows, table, batch_windows=max(1, 65536 // seq_len),
                    device=torch.device("cpu")).val_bpb


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    args = parser.parse_args()
    raw = quant.read_artifact(args.run_dir / "model_raw.golf")
    state, meta = raw.state_dict, raw.meta
    params = sum(t.numel() for t in state.values())
    roles = roles_from_meta(meta)
    rows = {f"int8+{c} (golf)": len(quant.encode_artifact(state, rule="int8", roles=roles, meta=meta, compressor=c))
            for c in ("zstd-22", "zlib-9", "lzma", "none")}
    rows["int8+zlib-9 (official torch.save container)"] = official_container_bytes(state, roles)
    reference = rows["int8+zlib-9 (official torch.save container)"]
    int8_state = quant.decode_artifact(quant.encode_artifact(state, rule="int8", roles=roles, meta=meta)).state_dict
    bpb_raw, bpb_int8 = val_bpb(meta, state), val_bpb(meta, int8_state)
    report = {"run_dir": str(args.run_dir), "params": params, "fp32_val_bpb": bpb_raw, "int8_val_bpb": bpb_int8,
              "int8_gap_bpb": bpb_int8 - bpb_raw,
              "rows": {k: {"bytes": v, "bytes_per_param": round(v / params, 4),
                           "vs_official": round(v / reference, 4)} for k, v in rows.items()}}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
