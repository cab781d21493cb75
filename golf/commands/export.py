"""`golf export ARTIFACT --onnx OUT`: an AR artifact as ONNX graphs that store its weights as it does."""

from __future__ import annotations

import argparse
from pathlib import Path

from golf.commands import emit_json

EPILOG = """examples:
  golf export runs/demo --onnx runs/demo/model.onnx        # writes model.onnx + model.kv.onnx
  golf export model.golf --onnx web/model.onnx --standard  # no contrib ops (standard ONNX only)
  golf generate runs/demo/model.onnx --prompt "The"         # sample from it with onnxruntime

OUT is the scoring graph (input_ids [B, T] → logits [B, T, V]); OUT's stem + .kv.onnx is the
KV-cache decode graph (input_ids, past_key.i / past_value.i [B, KVH, P, hd] → logits,
present_key.i / present_value.i). The decode graph reads its weights from OUT (external data
pointing into OUT's bytes), so keep the two files together; together they hold one copy.

Weights keep their artifact scheme. A tied int4g32/int4g64 table is stored once, as the artifact
stores it (packed nibbles + fp16 scales), and read by com.microsoft.GatherBlockQuantized (lookup)
and com.microsoft.MatMulNBits (LM head) through one Reshape; needs onnxruntime >= 1.22.
--standard stores it as signed int4 for DequantizeLinear instead (any ONNX runtime with opset 21).
int8/fp8 weights go through DequantizeLinear; int5-7 codes are stored one per int8 byte (ONNX has
no narrower type); fp16/bf16/fp32 as stored. IR version 10, opset 21 (+ com.microsoft 1).

Before anything is written, onnxruntime's logits are compared with the dequantized torch model
on real val text (the scoring graph, a prefill and one-token decode steps; tolerance 1e-3) and
greedy generation must pick the same tokens; --no-check skips this. Only the 'ar' family has a
graph; other families sample with `golf generate ARTIFACT`."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export an AR artifact to ONNX (tied int4 table stored once)",
                       description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("artifact", type=Path, help="a .golf artifact, or a run folder holding model.golf")
    p.add_argument("--onnx", type=Path, required=True, metavar="OUT", help="the .onnx file to write")
    p.add_argument("--standard", action="store_true", help="standard ONNX ops only (no com.microsoft ops)")
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime vs torch parity check")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from export import require_onnx

    require_onnx()
    from export.onnx_export import export_onnx

    report = export_onnx(args.artifact, args.onnx, contrib=not args.standard, check=not args.no_check)
    if args.json:
        emit_json(report)
        return 0
    print(f"wrote      {report['onnx']} ({report['bytes_onnx']:,} bytes: weights {report['bytes_weights']:,}, "
          f"graph {report['bytes_graph']:,}) from {report['artifact']} ({report['bytes_artifact']:,} bytes)")
    print(f"wrote      {report['decode_onnx']} ({report['bytes_decode_onnx']:,} bytes; "
          f"{report['bytes_shared_with_onnx']:,} bytes of weights read from {Path(report['onnx']).name})")
    if report["bytes_tied_table"] is not None:
        ops = "GatherBlockQuantized + MatMulNBits" if report["contrib_ops"] else "DequantizeLinear (int4)"
        print(f"tied table {report['bytes_tied_table']:,} bytes, stored once, read by {ops}")
    parity = report["parity"]
    if parity is not None:
        diffs = ", ".join(f"{k} {v:.2e}" for k, v in parity["max_abs_logit_diff"].items())
        print(f"parity     ok: max |logit diff| {diffs} (tolerance {parity['tolerance']}); greedy "
              f"{parity['greedy_tokens']} tokens identical")
    return 0
