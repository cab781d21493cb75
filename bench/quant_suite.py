"""Quantization suite benchmark: bytes and roundtrip bpb gap per rule × layout × compressor.

For each trained run folder (train_gpt.py writes its unquantized weights to model_raw.golf), every
rule below is encoded with every code layout it has and every compressor; the bytes are exact
artifact sizes. Each rule's artifact is then scored from its bytes (golf score's code path, exact
bpb on the embedded val split) and compared with the unquantized model scored the same way.
The reference comparator is the official int8 + zlib-9. It also measures each scheme's
compressed bytes/param on the model's matrices, which `golf budget` uses
(--write-ratios golf/assets/compression_ratios.json).

    python bench/quant_suite.py runs/demo runs/large [--rule RULE ...] [--layout planes ...] [--val-tokens N]
                          [--out bench/results/quant.json] [--write-ratios FILE --ratios-compressor C]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

import quant
from golf import embedded
from golf.calibrate import collect_hessians
from golf.data import DistributedTokenLoader, find_shards
from golf.models import roles_from_meta
from golf.score import model_from_artifact, score_artifact
from quant.artifact import _tensor_bytes
from quant.rules import split_sigma
from quant.schemes import EncodeOptions

RULES = [
    "int8",  # the official baseline
    "fp16",
    "fp8",
    "int6",
    "int5",
    "int4",
    "emb=int4g32,attn=int6,mlp=int6,other=int8,small=fp16",  # the example
    "int6,gptq=1",
    "int5,gptq=1",
    "int4,gptq=1",
    "emb=int6,attn=int5,mlp=int4,gptq=1",
    "emb=int4g32,attn=int5,mlp=int4,gptq=1",
    # The embedding is the sensitive tensor, and absmax int8 compresses better than clip-searched int6.
    "emb=int8,attn=int6,mlp=int5,gptq=1",
    "emb=int8,attn=int5,mlp=int4,gptq=1",
    "emb=int8,attn=int4,mlp=int4,gptq=1",
    # A step of K row RMS (σ about zero) (the top records' choice), against the clip search above.
    "int6s12,gptq=1",
    "emb=int7,attn=int6,mlp=int6,gptq=1",  # PRESET=frontier before the σ step
    "emb=int7s15,attn=int6s13,mlp=int6s12,gptq=1",  # the top record's steps
]
REFERENCE = ("int8", "zlib-9")
MATRIX_SCHEMES = ["fp32", "fp16", "bf16", "fp8e4m3", "int8", "int7", "int6", "int5", "int4", "int4g32", "int4g64",
                  # K·σ steps, spelled as rules spell them (golf budget shifts a K it lacks from the nearest)
                  "int7s15", "int7s20", "int6s10", "int6s12", "int6s12.85", "int6s13", "int6s16", "int5s8", "int4s6"]


def calibration_hessians(raw: quant.Artifact, tokens: int) -> tuple[dict[str, torch.Tensor], float]:
    """GPTQ Hessians from the embedded sample's train shard, as train_gpt.py would collect them."""
    model = model_from_artifact(raw.meta, raw.state_dict)
    seq_len = int(raw.meta["eval"]["seq_len"])
    loader = DistributedTokenLoader(find_shards(embedded.shards_dir(), "train"), 0, 1,
                                    vocab_size=model.vocab_size)
    batch_tokens = 8 * seq_len
    batches = (loader.next_batch(batch_tokens, seq_len, 1) for _ in range(max(1, tokens // batch_tokens)))
    return collect_hessians(model, batches, device=torch.device("cpu"))


def scheme_ratios(state_dict: dict[str, torch.Tensor], compressors: list[str]) -> dict[str, dict[str, float]]:
    """Compressed bytes per parameter of each scheme over all matrices it accepts, per compressor."""
    out: dict[str, dict[str, float]] = {c: {} for c in compressors}
    matrices = {k: v for k, v in sorted(state_dict.items()) if v.ndim == 2 and v.is_floating_point()}
    for name in MATRIX_SCHEMES:
        base, clip_sigmas = split_sigma(name)
        scheme, blobs, params = quant.get_scheme(base), [], 0
        opts = EncodeOptions(clip_sigmas=clip_sigmas)
        for t in matrices.values():
            try:
                enc = scheme.encode(t, opts)
            except quant.QuantError:
                continue  # e.g. int4g64 on a 32-wide matrix
            blobs.extend(_tensor_bytes(enc.parts[k]) for k in sorted(enc.parts))
            params += t.numel()
        data = b"".join(blobs)
        for c in compressors:
            out[c][name] = len(quant.compress(c, data)) / params
    return out


def bench_run(run_dir: Path, rules: list[str], layouts: list[str], val_tokens: int | None,
              calib_tokens: int) -> dict:
    raw_path = run_dir / "model_raw.golf"
    raw = quant.read_artifact(raw_path)
    params = sum(t.numel() for t in raw.state_dict.values())
    score_args = {"data": embedded.shards_dir(), "tokenizer": embedded.tokenizer_path(),
                  "max_tokens": val_tokens, "progress": False}
    reference = score_artifact(raw_path, **score_args)
    print(f"{run_dir}: {params:,} params, unquantized val_bpb {reference['val_bpb']:.5f}", flush=True)
    hessians, calib_seconds = calibration_hessians(raw, calib_tokens)
    roles = roles_from_meta(raw.meta)
    compressors = quant.compressor_names()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for rule_text in rules:
            rule = quant.parse_rule(rule_text)
            rule_layouts = layouts if isinstance(rule, quant.GroupRule) else [None]
            sizes: dict[str, dict[str, int]] = {}
            t_rule = time.perf_counter()
            encode_seconds = 0.0
            scored = None
            for layout in rule_layouts:
                text = rule_text if layout is None else f"{rule_text},layout={layout}"
                t0 = time.perf_counter()
                body = quant.encode_artifact(raw.state_dict, rule=text, roles=roles, meta=raw.meta, compressor="none",
                                             hessians=hessians if rule.gptq else None)
                encode_seconds = max(encode_seconds, time.perf_counter() - t0)
                decoded = quant.decode_artifact(body)
                sizes[layout or "-"] = {c: len(quant.recompress_artifact(body, c)) for c in compressors}
                if scored is None:
                    path = Path(tmp) / "m.golf"
                    path.write_bytes(body)
                    scored = score_artifact(path, **score_args)
                    first = decoded.state_dict
                else:  # layouts change bytes, never values
                    assert all(torch.equal(first[k], decoded.state_dict[k]) for k in first)
            row = {"rule": rule_text, "spec": rule.spec, "val_bpb": scored["val_bpb"], "label": scored["label"],
                   "gap_bpb": scored["val_bpb"] - reference["val_bpb"], "bytes": sizes,
                   "encode_seconds": round(encode_seconds, 2)}
            if rule.gptq:
                row["gptq_calibration_seconds"] = round(calib_seconds, 2)
            best = min((n, layout, c) for layout, per in sizes.items() for c, n in per.items())
            row["best"] = {"bytes": best[0], "layout": best[1], "compressor": best[2],
                           "bytes_per_param": best[0] / params}
            rows.append(row)
            print(f"  {rule_text:45s} {time.perf_counter() - t_rule:5.0f}s gap {row['gap_bpb']:+.5f}  best {best[0]:>10,} B "
                  f"({best[0] / params:.4f} B/param, {best[1]}, {best[2]})", flush=True)
    # The reference is always encoded: a run benched for one rule still gets its ratio.
    ref = next(r for r in rows if r["rule"] == REFERENCE[0])
    ref_bytes = ref["bytes"]["-"][REFERENCE[1]]
    for row in rows:
        row["smaller_than_int8_zlib"] = ref_bytes / row["best"]["bytes"]
    return {"run_dir": str(run_dir), "params": params, "model": raw.meta["model"], "val_tokens": reference["tokens"],
            "unquantized_val_bpb": reference["val_bpb"], "reference": {"rule": REFERENCE[0],
            "compressor": REFERENCE[1], "bytes": ref_bytes}, "rules": rows,
            "scheme_bytes_per_param": scheme_ratios(raw.state_dict, compressors)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="train_gpt.py run folders holding model_raw.golf")
    parser.add_argument("--rule", action="append", dest="rules", metavar="RULE",
                        help=f"a rule to bench (repeatable; default: the {len(RULES)} in RULES); int8 is always added")
    parser.add_argument("--layout", action="append", dest="layouts", choices=quant.LAYOUTS,
                        help="code layouts to try for group rules (repeatable; default: all)")
    parser.add_argument("--val-tokens", type=int, default=None, help="score only the first N val tokens")
    parser.add_argument("--calib-tokens", type=int, default=131_072, help="train tokens for GPTQ Hessians")
    parser.add_argument("--out", type=Path, default=Path("bench/results/quant.json"))
    parser.add_argument("--write-ratios", type=Path, default=None,
                        help="also write golf budget's ratios table from the LAST run, for --ratios-compressor")
    parser.add_argument("--ratios-compressor", default="lzma")
    args = parser.parse_args()
    rules = [REFERENCE[0], *[r for r in (args.rules or RULES) if r != REFERENCE[0]]]
    layouts = args.layouts or list(quant.LAYOUTS)
    results = {"command": "python bench/quant_suite.py " + " ".join(sys.argv[1:]),
               "date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()} {torch.get_num_threads()} threads",
               "torch": torch.__version__, "layouts": layouts,
               "runs": [bench_run(r, rules, layouts, args.val_tokens, args.calib_tokens) for r in args.runs]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    if args.write_ratios:
        last = results["runs"][-1]
        table = {"provenance": {"command": results["command"], "date": results["date"], "machine": results["machine"],
                                "model": f"{last['run_dir']} ({last['params']:,} params)"},
                 "compressor": args.ratios_compressor,
                 "bytes_per_param": {k: round(v, 5) for k, v in
                                     last["scheme_bytes_per_param"][args.ratios_compressor].items()}}
        args.write_ratios.write_text(json.dumps(table, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
