"""onnxruntime vs torch on the CPU: scoring and generation tokens/s of an exported AR artifact.

The artifact is exported twice (contrib ops: GatherBlockQuantized + MatMulNBits on the tied int4
table; standard ONNX: DequantizeLinear), and each runtime does the same work, best of --repeats:

- scoring: logits and per-token cross-entropy of `--windows` val windows of the artifact's seq_len,
  in one batch (torch: `model.score`, what `golf score` runs; onnxruntime: the scoring graph, then
  the same cross-entropy in torch);
- generation: greedy decoding of `--new` tokens after a `--prompt-len`-token val prompt, batch 1,
  on a KV cache (torch: `model.generate`; onnxruntime: the decode graph), new tokens per second.

Both get the same threads (torch.set_num_threads, intra_op_num_threads), for each of --threads:
on a shared 2-core machine 2 threads can collapse when another process holds a core (spinning
OpenMP/onnxruntime workers), so 1 thread is measured too. The torch model is the reference
measured in the same run; ratios are onnxruntime / torch.

    python bench/onnx_runtime.py runs/demo14 --out bench/results/onnx-demo.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import onnxruntime
import torch
import torch.nn.functional as F

from export.onnx_export import decode_path, export_onnx
from export.parity import parity_tokens
from export.runtime import OnnxAR
from golf.inspect import resolve_artifact
from golf.score import model_from_artifact
from quant import read_artifact


def cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor()
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "")


def best_seconds(fn, repeats: int) -> float:
    fn()  # warm-up: session initialisation, allocator, caches
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(artifact: Path, graphs: dict[str, Path], args: argparse.Namespace, threads: int) -> dict:
    """Rows {runtime: seconds, tokens/s, ratio vs torch} with `threads` threads for every runtime."""
    torch.set_num_threads(threads)
    stored = read_artifact(artifact)
    model = model_from_artifact(stored.meta, stored.state_dict).eval()
    seq_len = int(stored.meta["eval"]["seq_len"])
    windows = parity_tokens(args.windows, seq_len + 1)
    prompt = windows[:1, :args.prompt_len]

    def torch_score():
        with torch.inference_mode():
            model.score(windows)

    def torch_generate():
        with torch.inference_mode():
            model.generate(prompt, args.new, temperature=0)

    rows = {"torch": {"score_s": best_seconds(torch_score, args.repeats),
                      "generate_s": best_seconds(torch_generate, args.repeats)}}
    for name, graph in graphs.items():
        runner = OnnxAR(decode_path(graph), graph, threads=threads)

        def ort_score(runner=runner):
            logits = torch.from_numpy(runner.logits(windows[:, :-1].numpy()))
            F.cross_entropy(logits.flatten(0, 1), windows[:, 1:].flatten(), reduction="none")

        def ort_generate(runner=runner):
            runner.generate(prompt, args.new, temperature=0)

        rows[name] = {"score_s": best_seconds(ort_score, args.repeats),
                      "generate_s": best_seconds(ort_generate, args.repeats)}
    for row in rows.values():
        row["score_tokens_per_s"] = args.windows * seq_len / row["score_s"]
        row["generate_tokens_per_s"] = args.new / row["generate_s"]
    for row in rows.values():
        row["score_ratio_vs_torch"] = row["score_tokens_per_s"] / rows["torch"]["score_tokens_per_s"]
        row["generate_ratio_vs_torch"] = row["generate_tokens_per_s"] / rows["torch"]["generate_tokens_per_s"]
    return {"threads": threads, "seq_len": seq_len, "scored_tokens": args.windows * seq_len, "rows": rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("artifact", type=Path, help="a .golf artifact or run folder of the ar family")
    parser.add_argument("--windows", type=int, default=8, help="val windows scored per batch (default 8)")
    parser.add_argument("--prompt-len", type=int, default=16)
    parser.add_argument("--new", type=int, default=128, help="tokens generated (default 128)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts to measure (default 1 2)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()
    artifact = resolve_artifact(args.artifact)
    sizes: dict = {"artifact": artifact.stat().st_size}
    with tempfile.TemporaryDirectory() as tmp:
        graphs = {}
        for name, contrib in (("onnxruntime (contrib ops)", True), ("onnxruntime (standard ONNX)", False)):
            out = Path(tmp) / f"{int(contrib)}" / "model.onnx"
            report = export_onnx(artifact, out, contrib=contrib)
            graphs[name] = out
            sizes[name] = {"onnx": report["bytes_onnx"], "kv_onnx": report["bytes_decode_onnx"],
                           "weights": report["bytes_weights"], "tied_table": report["bytes_tied_table"],
                           "parity_max_abs_logit_diff": report["parity"]["max_abs_logit_diff"]}
        runs = [measure(artifact, graphs, args, threads) for threads in args.threads]
    result = {"command": "python bench/onnx_runtime.py " + " ".join(
                  [str(args.artifact), f"--windows {args.windows}", f"--new {args.new}",
                   "--threads " + " ".join(map(str, args.threads))]),
              "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": platform.machine(), "cpus": os.cpu_count(),
              "cpu": cpu_model(), "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
              "rule": read_artifact(artifact).rule, "prompt_len": args.prompt_len, "new_tokens": args.new,
              "repeats": args.repeats, "sizes": sizes, "runs": runs}
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
