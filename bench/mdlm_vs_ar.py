"""AR against masked diffusion (MDLM) trained alike: val_bpb with its label, the chain rule on a
subset, training throughput and generated text, from two finished train_gpt.py runs.

Both artifacts (model.golf, what ships) are scored by `golf score`'s code path on the embedded val
split with the same byte table: AR exact; MDLM's NELBO as a bound with its Monte Carlo standard
error (--samples draws per window, --seed); then, on the first --chain-windows windows, AR exact,
the MDLM bound and the MDLM left-to-right chain rule (exact, one forward pass per target).
A run's CPU seconds come from `<run>.time` ("wall user sys", as /usr/bin/time -f "%e %U %S"
writes it around the training command) when present. The quantization gaps come from
bench/quant_suite.py on the same runs.

    python bench/mdlm_vs_ar.py runs/bench-ar runs/bench-mdlm --samples 8 --chain-windows 16 \\
        --out bench/results/mdlm-vs-ar.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

import quant
from golf import embedded
from golf.bpb import load_tokenizer
from golf.data import find_shards, load_val_tokens
from golf.score import model_from_artifact, score_artifact

PROMPT_TOKENS = 32
GENERATED_TOKENS = 64


def training(run_dir: Path) -> dict:
    result = json.loads((run_dir / "result.json").read_text())
    row = {"model": result["model"], "params": result["model_params"], "steps": result["steps"],
           "train_time_ms": result["train_time_ms"], "tokens_seen": result["tokens_seen"],
           "tokens_per_s": result["tokens_seen"] / (result["train_time_ms"] / 1000),
           "world_size": result["world_size"], "trainer_val_bpb": result["val_bpb"], "label": result["label"]}
    timing = Path(f"{run_dir}.time")
    if timing.is_file():
        wall, user, system = (float(x) for x in timing.read_text().split()[-3:])
        row["process_seconds"] = {"wall": wall, "cpu": user + system}
    return row


def score(run_dir: Path, **kwargs) -> dict:
    keep = ("val_bpb", "val_bpb_stderr", "label", "tokens", "bytes", "seed", "samples", "seconds",
            "forward_passes_per_window", "options")
    report = score_artifact(run_dir / "model.golf", data=embedded.shards_dir(), tokenizer=embedded.tokenizer_path(),
                            progress=False, **kwargs)
    return {k: report[k] for k in keep}


def samples_text(run_dir: Path, prompt: torch.Tensor, seed: int) -> dict:
    """A continuation of the same val prompt by each model: temperature 0.8, top-k 40; MDLM with
    one token per forward pass in blocks of 32 (its defaults)."""
    artifact = quant.read_artifact(run_dir / "model.golf")
    model = model_from_artifact(artifact.meta, artifact.state_dict).eval()
    sp = load_tokenizer(embedded.tokenizer_path())
    out = model.generate(prompt, GENERATED_TOKENS, temperature=0.8, top_k=40,
                         generator=torch.Generator().manual_seed(seed))
    return {"prompt": sp.decode(prompt[0].tolist()), "continuation": sp.decode(out[0, PROMPT_TOKENS:].tolist())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ar", type=Path, help="the AR run folder")
    parser.add_argument("mdlm", type=Path, help="the MDLM run folder")
    parser.add_argument("--samples", type=int, default=8, help="Monte Carlo draws per window for the MDLM bound")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chain-windows", type=int, default=16, help="windows scored by the chain rule")
    parser.add_argument("--out", type=Path, default=Path("bench/results/mdlm-vs-ar.json"))
    args = parser.parse_args()

    seq_len = int(quant.read_artifact(args.ar / "model.golf").meta["eval"]["seq_len"])
    subset = args.chain_windows * seq_len + 1
    start = time.perf_counter()
    report = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()} {torch.get_num_threads()} threads",
              "torch": torch.__version__, "seq_len": seq_len,
              "ar": {"training": training(args.ar), "full": score(args.ar)},
              "mdlm": {"training": training(args.mdlm),
                       "full": score(args.mdlm, seed=args.seed, samples=args.samples)}}
    print(json.dumps({k: report[k]["full"] for k in ("ar", "mdlm")}), flush=True)
    report["subset"] = {"windows": args.chain_windows, "ar": score(args.ar, max_tokens=subset),
                        "mdlm_bound": score(args.mdlm, max_tokens=subset, seed=args.seed, samples=args.samples),
                        "mdlm_chain": score(args.mdlm, max_tokens=subset, options={"mdlm_score": "chain"})}
    print(json.dumps(report["subset"]), flush=True)
    val = load_val_tokens(find_shards(embedded.shards_dir(), "val"), seq_len)
    prompt = val[None, :PROMPT_TOKENS].long()
    report["generated"] = {name: samples_text(run, prompt, args.seed) for name, run in (("ar", args.ar),
                                                                                          ("mdlm", args.mdlm))}
    report["bench_seconds"] = round(time.perf_counter() - start, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
