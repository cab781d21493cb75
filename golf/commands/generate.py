"""`golf generate MODEL --prompt TEXT`: sample a continuation from an artifact or an exported ONNX model."""

from __future__ import annotations

import argparse
from pathlib import Path

from golf.commands import add_sampling_args, emit_json

EPILOG = """examples:
  golf generate runs/demo --prompt "The weather today"            # the run's model.golf
  golf generate runs/demo/model.onnx --prompt "The" --temperature 0  # onnxruntime, greedy
  golf generate model.golf --prompt "Once" --tokens 200 --top-k 40 --seed 3 --json

MODEL is a .golf artifact of any family (sampled through its family's generate; the AR model
uses a KV cache), a run folder holding model.golf, or a .onnx file from `golf export` (run by
onnxruntime on its .kv.onnx decode graph). The prompt starts a new document (BOS + its pieces).
--temperature 0 is greedy; --top-k keeps the k most likely tokens; the same --seed gives the
same sample. tokens/s counts new tokens over the whole call (prompt processing included)."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="sample text from an artifact or an exported .onnx model",
                       description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", type=Path, help="a .golf artifact, a run folder, or a .onnx file from golf export")
    add_sampling_args(p, prompt="", tokens=64, temperature=0.8, top_k=50)
    p.add_argument("--tokenizer", type=Path, default=None,
                   help="sentencepiece .model the model was trained with (default: the embedded one; sha256 checked)")
    p.add_argument("--device", default="cpu", help="auto, cpu or cuda for artifacts (ONNX runs on the CPU)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from golf.generate import generate_text

    report = generate_text(args.model, args.prompt, tokens=args.tokens, temperature=args.temperature,
                           top_k=args.top_k or None, seed=args.seed, tokenizer=args.tokenizer, device=args.device)
    if args.json:
        emit_json(report)
        return 0
    print(report["prompt"] + report["completion"])
    print(f"-- {report['kind']}: {report['new_tokens']} tokens in {report['seconds']:.2f} s "
          f"({report['tokens_per_s']:,.1f} tokens/s on {report['device']}), temperature {report['temperature']}, "
          f"top-k {report['top_k'] or 'all'}, seed {report['seed']}")
    return 0

