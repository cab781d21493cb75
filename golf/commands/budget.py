"""`golf budget`: where the bytes go, before a run — params by component, the artifact estimate
per rule, whether it fits in 16,000,000 bytes, the largest model that does, FLOPs and step time."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from golf.commands import emit_json
from golf.errors import GolfError

EPILOG = """examples:
  golf budget                                     # the baseline (9x512, vocab 1024) under QUANT or int8
  golf budget --rule int8 --rule emb=int4g32,attn=int6,mlp=int5   # compare rules; the first decides
  NUM_LAYERS=12 MODEL_DIM=640 QUANT=int6 golf budget --rule int8  # the trainer's env; QUANT is chosen
  golf budget --vocab-size 8192 --model-dim 384   # how much of the cap does a big vocabulary eat?
  golf budget --code-bytes 60000 --mfu 0.3 --json # for scripts: exit 0 fits, 1 over the cap, 2 bad input
  golf budget --preset frontier                   # the top records' recipe: 11x512, MLP x4, SP8192, ...

Configuration: the trainer's environment variables (MODEL, NUM_LAYERS, MODEL_DIM, NUM_HEADS,
NUM_KV_HEADS, MLP_MULT, VOCAB_SIZE, TIE_EMBEDDINGS, TRAIN_SEQ_LEN, TRAIN_BATCH_TOKENS, QUANT),
with the trainer's defaults; flags override them. The chosen rule is --quant, else QUANT, else
the first --rule, else int8; every --rule is shown beside it. The exit code is the chosen rule's.

Bytes (estimates): each tensor's scheme comes from the rule (quant.plan); its bytes are numel x
the scheme's measured compressed bytes/param from --ratios (default
golf/assets/compression_ratios.json, written by the benchmarks with their command, date, machine
and compressor), plus 512 B + 24 B per tensor for the container and manifest (measured roughly
on real artifacts). A K-sigma step the table lacks (int6s14) is shifted from the nearest measured
K of the same width by log2(K0/K)/8 bytes/param (a uniform quantizer's entropy).
Code bytes default to the size of the self-contained train_gpt.py that `golf pack` would write
from this checkout (the script plus the golf/quant modules it imports, compressed): exact, and
the same number the trainer logs as `Code size:`.
total = code + model; headroom = 16,000,000 - total (negative when over).

Largest model that fits, per rule: NUM_LAYERS at this width, and MODEL_DIM at this depth with
the head dim and the query:KV head ratio fixed (NUM_HEADS = MODEL_DIM / head_dim), so MODEL_DIM
steps by lcm(64, head_dim x ratio); "next" is one step larger, which does not fit.

Compute: training FLOPs/token = 6*N_matmul + 6*L*T*D, where N_matmul counts every matmul weight
(all Linear layers, once per run of their block under depth recurrence, plus the LM head's V*D
even when tied; the embedding lookup is free), L = block runs (NUM_LAYERS without recurrence),
T = TRAIN_SEQ_LEN, D = MODEL_DIM (causal attention: QK^T and AV, fwd + bwd, halved by the mask;
a bidirectional model such as MODEL=mdlm counts them in full, 12*L*T*D).
step time = FLOPs/token x TRAIN_BATCH_TOKENS / (8 x 989e12 x MFU), MFU default 0.40 of the
H100's dense bf16 peak; steps and tokens are for the 600 s training cap."""

# flag dest → the trainer's environment variable it overrides
ENV_FLAGS = {"model": "MODEL", "num_layers": "NUM_LAYERS", "model_dim": "MODEL_DIM", "num_heads": "NUM_HEADS",
             "num_kv_heads": "NUM_KV_HEADS", "mlp_mult": "MLP_MULT", "vocab_size": "VOCAB_SIZE",
             "tie_embeddings": "TIE_EMBEDDINGS", "seq_len": "TRAIN_SEQ_LEN", "batch_tokens": "TRAIN_BATCH_TOKENS",
             "quant": "QUANT"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    from golf.budget import DEFAULT_MFU

    p = sub.add_parser("budget", help="before a run: params, artifact bytes per rule, fit, largest model, FLOPs",
                       description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("model and training (override the environment variable in brackets)")
    g.add_argument("--model", help="model variant [MODEL, default ar]")
    for dest, help_text in (("num_layers", "blocks"), ("model_dim", "width"), ("num_heads", "query heads"),
                            ("num_kv_heads", "key/value heads"), ("mlp_mult", "MLP hidden = MLP_MULT x width"),
                            ("vocab_size", "tokenizer vocabulary")):
        g.add_argument("--" + dest.replace("_", "-"), type=_positive, metavar="N",
                       help=f"{help_text} [{ENV_FLAGS[dest]}]")
    g.add_argument("--tie-embeddings", choices=("0", "1"), help="1 = the embedding is also the LM head [TIE_EMBEDDINGS]")
    g.add_argument("--seq-len", type=_positive, metavar="T", help="training sequence length [TRAIN_SEQ_LEN, 1024]")
    g.add_argument("--batch-tokens", type=_positive, metavar="N",
                   help="tokens per optimizer step [TRAIN_BATCH_TOKENS, 524288]")
    p.add_argument("--preset", metavar="NAME", help="fill unset variables from a trainer preset (frontier: the "
                   "top records' recipe, see golf/presets.py), as PRESET=NAME does for train_gpt.py")
    p.add_argument("--quant", metavar="RULE", help="the chosen rule [QUANT]; decides the exit code")
    p.add_argument("--rule", action="append", default=[], metavar="RULE",
                   help="a rule to compare (repeatable), e.g. int8, fp16, int6, emb=int4g32,attn=int6,mlp=int6")
    p.add_argument("--ratios", type=Path, default=None, metavar="FILE",
                   help="measured compressed bytes/param per scheme (default golf/assets/compression_ratios.json)")
    p.add_argument("--code-bytes", type=_non_negative, default=None, metavar="N",
                   help="code bytes to count (default: the packed train_gpt.py `golf pack` would write, exact)")
    p.add_argument("--mfu", type=_fraction, default=DEFAULT_MFU,
                   help=f"model FLOPs utilization for the step-time prediction (default {DEFAULT_MFU:.2f})")
    p.add_argument("--no-search", action="store_true", help="skip the largest-model search")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(func=run)


def _positive(text: str) -> int:
    n = _non_negative(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return n


def _non_negative(text: str) -> int:
    try:
        n = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return n


def _fraction(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        x = 0.0
    if not 0 < x <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}")
    return x


def _env_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    try:
        value = default if raw is None else int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise GolfError(f"{name}={raw!r} is not a positive integer")
    return value


def run(args: argparse.Namespace) -> int:
    from golf import models
    from golf.presets import apply_preset
    from golf.budget import (
        DEFAULT_RATIOS,
        budget,
        default_script,
        packed_code_bytes,
        load_ratios,
    )

    # Flags override the environment by being written over it, so both go through the same parser;
    # a preset fills what neither sets, exactly as in the trainer.
    env = {**os.environ, **{ENV_FLAGS[k]: str(v) for k, v in vars(args).items() if k in ENV_FLAGS and v is not None}}
    preset_name = args.preset or env.get("PRESET")
    if preset_name:
        apply_preset(preset_name, env)
    variant = env.get("MODEL", "ar")
    config = models.config_from_env(variant, env)
    chosen = env.get("QUANT") or (args.rule[0] if args.rule else "int8")
    rules: list[str] = []
    for rule in [chosen, *args.rule]:
        if rule not in rules:
            rules.append(rule)
    ratios = load_ratios(args.ratios if args.ratios is not None else DEFAULT_RATIOS)
    if args.code_bytes is not None:
        code_bytes, source = args.code_bytes, "given (--code-bytes)"
    else:
        code_bytes, nfiles = packed_code_bytes(default_script())
        source = f"exact: the packed train_gpt.py, {nfiles} source files"
    report = budget(variant, config, rules, ratios, code_bytes=code_bytes, code_source=source,
                    preset=preset_name,
                    seq_len=_env_int(env, "TRAIN_SEQ_LEN", 1024),
                    batch_tokens=_env_int(env, "TRAIN_BATCH_TOKENS", 524_288), mfu=args.mfu,
                    search=not args.no_search)
    compressor = env.get("COMPRESSOR")
    report["notes"] = ([f"ratios were measured with {ratios.compressor}, COMPRESSOR is {compressor}"]
                       if compressor and compressor != ratios.compressor else [])
    if args.json:
        emit_json(report)
    else:
        print_report(report)
    return 0 if report["fits"] else 1


def _pct(x: float) -> str:
    return f"{100 * x:5.1f}%"


def print_report(r: dict[str, Any]) -> None:
    c, p, v = r["config"], r["params"], r["vocab"]
    if {"num_layers", "model_dim", "num_heads", "num_kv_heads"} <= set(c):
        print(f"model      {r['variant']}: {c['num_layers']} layers x {c['model_dim']} ({c['num_heads']} heads, "
              f"{c['num_kv_heads']} KV), MLP x{c.get('mlp_mult')}, vocab {c.get('vocab_size')}, "
              f"{'tied' if v['tied'] else 'untied'} embedding")
    else:
        print(f"model      {r['variant']}: {c}")
    labels = {"embedding": "token embedding" + (" (= LM head)" if v["tied"] else ""), "lm_head": "LM head",
              "attention": "attention matrices", "mlp": "MLP matrices", "other": "other (gains, mixes, skips)"}
    print(f"\n{'parameters':<30} {'params':>14}  {'share':>6}")
    for key, count in p["components"].items():
        if count or key != "lm_head":
            label = labels.get(key, f"{key} (family role)")
            print(f"  {label:<28} {count:>14,}  {_pct(count / p['total'] if p['total'] else 0)}")
    print(f"  {'total':<28} {p['total']:>14,}  ({p['tensors']} tensors)")
    head = "embedding = LM head" if v["tied"] else "x 2: embedding + LM head"
    print(f"vocabulary V x D = {v['vocab_size']} x {v['model_dim']} ({head}) = {v['params']:,} params, "
          f"{100 * v['share']:.1f}% of the model")

    prov = r["ratios"]["provenance"]
    print(f"\nartifact estimate (cap {r['limit']:,} B; ratios {r['ratios']['path']}, {r['ratios']['compressor']}"
          f"{', ' + prov['date'] if prov.get('date') else ''}{', ' + prov['machine'] if prov.get('machine') else ''})")
    print(f"code       {r['code_bytes']:,} B ({r['code_source']})")
    print(f"overhead   {r['overhead']['fixed']} B + {r['overhead']['per_tensor']} B/tensor (estimate), "
          "included in model bytes")
    width = max(len("model bytes by component") + 1, *(len(row["rule"]) + 2 for row in r["rules"]))
    print(f"{'rule':<{width}} {'model B':>12} {'total B':>12} {'headroom':>12}  {'fits':<4}  {'vocab B':>6}")
    for row in r["rules"]:
        mark = "*" if row["chosen"] else " "
        print(f"{mark} {row['rule']:<{width - 2}} {row['model_bytes']:>12,} {row['total_bytes']:>12,} "
              f"{row['headroom']:>12,}  {'yes' if row['fits'] else 'NO':<4}  {_pct(row['vocab_bytes_share'])}")
    print("  * = chosen rule (decides the exit code); vocab B = embedding + head share of model bytes")
    print(f"\n{'model bytes by component':<{width}} " + " ".join(f"{k:>11}" for k in p["components"]))
    for row in r["rules"]:
        print(f"  {row['rule']:<{width - 2}} " + " ".join(f"{b:>11,}" for b in row["bytes_by_component"].values()))

    if any(row["largest"] for row in r["rules"]):
        print(f"\n{'largest that fits':<{width}} {'NUM_LAYERS at this width':<32} MODEL_DIM at this depth")
        for row in r["rules"]:
            big = row["largest"] or {}
            print(f"  {row['rule']:<{width - 2}} {_largest(big.get('num_layers')):<32} "
                  f"{_largest(big.get('model_dim'), heads=True)}")
        print(f"  width search: {r['width_search']}")

    f = r["compute"]
    print(f"\ncompute    training FLOPs/token = {f['formula']} = 6*{f['matmul_params']:,} + "
          f"{f['attention_factor']}*{f['layer_runs']}*{f['seq_len']}*{c.get('model_dim')} = "
          f"{f['flops_per_token']:,}")
    print(f"           step ({f['batch_tokens']:,} tokens) on {f['gpus']}xH100 at {f['peak_flops_per_gpu'] / 1e12:.0f} "
          f"TFLOP/s x MFU {f['mfu']:.2f}: {1000 * f['step_seconds']:.1f} ms -> {f['steps']:,} steps, "
          f"{f['tokens'] / 1e9:.2f}B tokens in {f['train_seconds']:.0f} s (prediction)")
    for note in r.get("notes", []):
        print(f"note       {note}")
    chosen = r["rules"][0]
    verdict = "fits" if chosen["fits"] else "does NOT fit"
    print(f"\n{chosen['rule']}: {verdict} - total {chosen['total_bytes']:,} B, headroom {chosen['headroom']:,} B")


def _largest(entry: dict[str, Any] | None, heads: bool = False) -> str:
    if entry is None:
        return "none fits"
    extra = f" ({entry['num_heads']}/{entry['num_kv_heads']} heads)" if heads else ""
    cap = " (search cap)" if entry["at_cap"] else ""
    nxt = entry["next"]
    return f"{entry['value']}{extra}{cap}: {entry['total_bytes'] / 1e6:.2f} MB ({nxt['value']}: {nxt['total_bytes'] / 1e6:.2f})"
