"""`golf toy spamlang`: small CPU experiments that check a model family does what it claims.

SpamLang: a first token, then copies of it. Half the ids are never first tokens in training; can
the model copy them anyway? (golf/toy_spamlang.py)"""

from __future__ import annotations

import argparse

from golf.commands import emit_json

EPILOG = """examples:
  golf toy spamlang                                   # all four models, about 3 minutes
  golf toy spamlang --models bits-ar,vanilla-untied --steps 500 --json

copy_acc: greedy continuation of the first token, on ids seen as first tokens in training and on
ids never seen. bits/token: at the copy positions (true conditional entropy 0), `exact` or an ELBO
`bound` with its Monte Carlo standard error."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    from golf.toy_spamlang import MODELS, SpamLangSetup

    toy = sub.add_parser("toy", help="small CPU experiments (spamlang)", description=__doc__, epilog=EPILOG,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    toys = toy.add_subparsers(dest="toy", metavar="TOY", required=True)
    p = toys.add_parser("spamlang", help="copy ids never seen in training: vanilla vs bit models",
                        description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = SpamLangSetup()
    p.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of: {', '.join(MODELS)}")
    for field, kind, text in (("vocab", int, "vocabulary size"), ("length", int, "sequence length"),
                              ("steps", int, "training steps per model"), ("batch", int, "sequences per step"),
                              ("lr", float, "AdamW learning rate"), ("model_dim", int, "backbone width"),
                              ("layers", int, "backbone layers"), ("eval_sequences", int, "held-out sequences"),
                              ("score_samples", int, "Monte Carlo draws per window for a bound"),
                              ("seed", int, "seed of the vocabulary split, data and init")):
        p.add_argument(f"--{field.replace('_', '-')}", type=kind, default=getattr(defaults, field),
                       help=f"{text} (default {getattr(defaults, field)})")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from golf.toy_spamlang import SpamLangSetup, run_spamlang

    setup = SpamLangSetup(vocab=args.vocab, length=args.length, steps=args.steps, batch=args.batch, lr=args.lr,
                          model_dim=args.model_dim, layers=args.layers, eval_sequences=args.eval_sequences,
                          score_samples=args.score_samples, seed=args.seed)
    report = run_spamlang(setup, [m.strip() for m in args.models.split(",") if m.strip()], progress=not args.json)
    if args.json:
        emit_json(report)
        return 0
    print(f"SpamLang V={setup.vocab} L={setup.length}, {setup.steps} steps × {setup.batch}, "
          f"{setup.layers}×{setup.model_dim} backbone, seed {setup.seed}")
    print(f"{'model':<16}{'params':>9}{'train s':>9}{'acc seen':>10}{'acc unseen':>12}"
          f"{'bits seen':>11}{'bits unseen':>13}  label")
    for name, r in report["models"].items():
        err = f" ±{r['bits_stderr_unseen']:.3f}" if "bits_stderr_unseen" in r else ""
        print(f"{name:<16}{r['params']:>9,}{r['train_seconds']:>9.1f}{r['copy_acc_seen']:>10.3f}"
              f"{r['copy_acc_unseen']:>12.3f}{r['bits_per_token_seen']:>11.3f}{r['bits_per_token_unseen']:>13.3f}"
              f"  {r['label']}{err}")
    return 0
