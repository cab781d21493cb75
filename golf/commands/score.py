"""`golf score ARTIFACT`: the exact bpb of an artifact, rebuilt from its bytes alone.

`golf score RECORD_DIR` checks a record folder (as `golf pack --check`) and re-scores every golf
artifact in it (model_seed<k>.golf), comparing each with the val_bpb the record claims."""

from __future__ import annotations

import argparse
from pathlib import Path

from golf.commands import add_data_args, data_paths, emit_json

EPILOG = """examples:
  golf score runs/demo/model.golf                 # embedded FineWeb sample, embedded tokenizer
  golf score runs/demo                            # a run folder: scores its model.golf
  golf score model.golf --data ./data/datasets/fineweb10B_sp1024 \\
             --tokenizer ./data/tokenizers/fineweb_1024_bpe.model --json
  golf score model.golf --max-tokens 100000 --audit
  golf score model.golf --eval-len 2048 --stride 64       # sliding windows, as the records score
  golf score model.golf --stride 64 --ttt --ttt-epochs 3  # + score-first test-time training
  golf score model.golf --eval-len 1024 --stride 256 --ttt-mode docs --ttt-lora-rank 8   # per-document LoRA TTT
  golf score model.golf --stride 256 --ttt-mode docs --ttt-prefix-docs 2000 --ttt-phases 3   # + global SGD phases
  golf score records/track_non_record_16mb/<date>_<name>    # check a record, re-score its artifacts
  golf score runs/mdlm --samples 4 --seed 7       # a masked-diffusion NELBO (bound) with 4 draws per window
  golf score runs/mdlm --mdlm-score chain --max-tokens 8193   # its exact left-to-right chain rule

The bpb is labelled `exact` (chain rule over a normalised distribution) or `bound` (an upper
bound, e.g. a diffusion ELBO, reported with its Monte Carlo standard error; --seed and --samples
set its draws). Bytes come from the tokenizer's byte table; --audit decodes every complete scored
document and checks that the table's byte total equals the UTF-8 length of the decoded text.

MDLM artifacts: --mdlm-score chain replaces the NELBO (bound) by the chain rule over the model's
left-to-right conditionals (exact, ceil(T/k) forward passes per window, k = --mdlm-chain-k);
the forward passes per window are reported for every model that counts them.

Where the val shards have byte sidecars (fineweb_val_bytes_*.bin), bpb divides by their bytes.

Sliding windows (--stride S < --eval-len L) score every target once, each window only its last S,
so each token has at least L - S tokens of left context; they need an exact, causal score (a
`bound` model is refused). --ttt trains a copy of the model on each chunk of val tokens right
after scoring it (score-first: no token is scored by weights that have seen it, checked on every
run). --ttt-mode docs scores each document (cut at BOS tokens) alone instead, S targets at a
time from at most L tokens of its own text; a rank-r LoRA per document takes one Adam step on
each chunk after scoring it and is reset for the next document; with --ttt-prefix-docs N, the
shared weights take SGD phases over the first N documents once they are scored (the LoRA-TTT
and phased-TTT records' methods; --ttt-lora-rank 0 alone is document-isolated sliding windows).
The eval clock (read, build, score) is reported against the 600 s evaluation cap.

The artifact is treated as hostile: what is decompressed, parsed and built is bounded by
docs/limits.md, and a non-finite score is an error (exit 2), never printed as a result."""


# The score-first TTT knobs (golf.ttt.TTTConfig fields); unset ones come from the artifact or the defaults.
TTT_KNOBS = (
    ("chunk_tokens", int, "scored targets per chunk before each round of training (default 32768)"),
    ("epochs", int, "training passes over each chunk after scoring it (default 3)"),
    ("lr", float, "SGD learning rate at the first chunk, cosine to 0 at the last (default 0.002)"),
    ("momentum", float, "SGD momentum (default 0.9)"),
    ("batch_seqs", int, "training windows per update (default 32)"),
    ("grad_clip", float, "max gradient norm, 0 = none (default 1.0)"),
    ("mode", str, "stream: train every weight on chunks of the val stream (default); docs: score each document "
     "alone, --stride targets at a time, with a per-document LoRA and optional global SGD phases"),
    ("doc_batch", int, "docs: documents scored side by side, each with its own adapters (default 64)"),
    ("lora_rank", int, "docs: rank of the per-document LoRA (on the head and --ttt-lora-targets), reset per "
     "document; 0 = none (default 8)"),
    ("lora_lr", float, "docs: AdamW learning rate of the adapters, one step per chunk (default 0.01)"),
    ("lora_targets", str, "docs: what the LoRA adapts besides the head, comma-separated: q, k, v (projections), "
     "o (attention output), mlp (MLP output), each from its sub-layer's input (default q,v; the phased-TTT "
     "records: q,k,v,o,mlp)"),
    ("lora_beta1", float, "docs: the adapters' AdamW beta1 (default 0.9; the records: 0)"),
    ("lora_beta2", float, "docs: the adapters' AdamW beta2 (default 0.95; the records: 0.999)"),
    ("lora_wd", float, "docs: the adapters' decoupled weight decay (default 0; the records: 1.0)"),
    ("prefix_docs", int, "docs: global SGD (the knobs above) after the first N documents are scored (default 0)"),
    ("phases", int, "docs: cut the prefix into this many SGD phases (default 1)"),
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("score", help="score an artifact (exact bpb) on the validation split",
                       description=__doc__, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("artifact", type=Path, help="a .golf artifact, a run folder holding model.golf, or a record "
                   "folder (holding submission.json)")
    add_data_args(p)
    p.add_argument("--max-tokens", type=int, default=None, help="score only the first N val tokens")
    p.add_argument("--eval-len", "--seq-len", dest="seq_len", type=int, default=None,
                   help="eval window length L (default: the trainer's EVAL_SEQ_LEN recorded in the artifact)")
    p.add_argument("--stride", type=int, default=None,
                   help="a new window every S tokens, each scoring its last S targets (default: the trainer's "
                   "EVAL_STRIDE when --eval-len is the recorded length, else L: non-overlapping windows)")
    p.add_argument("--batch-tokens", type=int, default=None,
                   help="tokens per forward pass (default: the trainer's eval batch recorded in the artifact, "
                   "else a per-device default: 1024 on CPU, 65536 on GPU)")
    p.add_argument("--ttt", action=argparse.BooleanOptionalAction, default=None,
                   help="score-first test-time training (default: as the trainer's TTT_ENABLED recorded in the "
                   "artifact); any --ttt-* knob switches it on")
    for name, kind, what in TTT_KNOBS:
        p.add_argument(f"--ttt-{name.replace('_', '-')}", dest=f"ttt_{name}", type=kind, default=None, help=what)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the Monte Carlo draws of a `bound` score (same seed, same number; default: the "
                   "trainer's EVAL_SEED recorded in the artifact)")
    p.add_argument("--samples", type=int, default=None,
                   help="Monte Carlo estimates per window for a `bound` score (more: smaller standard error; "
                   "default: the trainer's EVAL_SAMPLES recorded in the artifact)")
    p.add_argument("--mdlm-score", choices=("nelbo", "chain"), default=None,
                   help="MDLM only: nelbo = the Monte Carlo bound, chain = the exact left-to-right chain rule "
                   "(default: the artifact's MDLM_SCORE)")
    p.add_argument("--mdlm-chain-k", type=_positive, default=None, metavar="K",
                   help="MDLM chain only: positions revealed and scored per forward pass (default: the artifact's)")
    p.add_argument("--audit", action="store_true", help="also run the byte audit (exit 1 if it fails)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def run(args: argparse.Namespace) -> int:
    from golf.score import score_artifact

    data, tokenizer = data_paths(args)
    if (args.artifact / "submission.json").is_file():
        return score_record(args, data, tokenizer)
    artifact = args.artifact / "model.golf" if args.artifact.is_dir() else args.artifact
    options = {key: value for key, value in (("mdlm_score", args.mdlm_score), ("mdlm_chain_k", args.mdlm_chain_k))
               if value is not None}
    report = score_artifact(artifact, data=data, tokenizer=tokenizer, max_tokens=args.max_tokens,
                            seq_len=args.seq_len, stride=args.stride, batch_tokens=args.batch_tokens,
                            device=args.device, audit=args.audit, progress=not args.no_progress and not args.json,
                            seed=args.seed, samples=args.samples, ttt=args.ttt, ttt_overrides=ttt_knobs(args),
                            options=options)
    audit = report.get("sidecar_audit") or report.get("audit")  # with a sidecar, its bytes are the ones scored
    report["ok"] = audit is None or bool(audit["ok"])
    if args.json:
        emit_json(report)
    else:
        print_report(report)
    return 0 if report["ok"] else 1


def ttt_knobs(args: argparse.Namespace) -> dict:
    return {name: getattr(args, f"ttt_{name}") for name, _, _ in TTT_KNOBS if getattr(args, f"ttt_{name}") is not None}


def score_record(args: argparse.Namespace, data: Path, tokenizer: Path) -> int:
    """Check the record, then re-score each golf artifact against its seed's claimed val_bpb."""
    from golf.commands.pack import print_check
    from golf.errors import GolfError
    from golf.limits import MAX_RECORD_JSON_BYTES
    from golf.record.check import BPB_TOLERANCE, SEED_ARTIFACT, check_record
    from golf.safefiles import read_json, record_files
    from golf.score import score_artifact
    from quant import QuantError

    report = check_record(args.artifact)
    try:  # the claims to compare with, even when the check found problems
        claims = read_json(args.artifact / "submission.json", MAX_RECORD_JSON_BYTES, "submission.json")
    except GolfError:
        claims = {}
    results = claims.get("seed_results") if isinstance(claims, dict) else None
    results = results if isinstance(results, dict) else {}
    rescored = []
    # Regular files only (the check reported any symlink, FIFO or device as a problem).
    artifacts = [p for p in record_files(args.artifact)[0] if p.parent == args.artifact and p.suffix == ".golf"]
    for path in sorted(artifacts):
        seed = SEED_ARTIFACT.search(path.stem)
        claim = results.get(seed[1] if seed else "")
        claim = claim if isinstance(claim, dict) else {}
        # Score the same val tokens the run did (VAL_MAX_TOKENS may have capped them): n targets need n+1 tokens.
        max_tokens = args.max_tokens or (claim["val_tokens"] + 1 if isinstance(claim.get("val_tokens"), int) else None)
        claim = claim.get("val_bpb")
        try:
            scored = score_artifact(path, data=data, tokenizer=tokenizer, max_tokens=max_tokens,
                                    seq_len=args.seq_len, stride=args.stride, batch_tokens=args.batch_tokens,
                                    device=args.device, progress=not args.no_progress and not args.json,
                                    ttt=args.ttt, ttt_overrides=ttt_knobs(args))
        except (GolfError, QuantError) as e:
            report["problems"].append(f"{path.name} cannot be scored: {str(e).replace(f'{path}: ', '')}")
            continue
        agrees = isinstance(claim, (int, float)) and abs(scored["val_bpb"] - claim) <= BPB_TOLERANCE
        rescored.append({"artifact": path.name, "val_bpb": scored["val_bpb"], "claimed_val_bpb": claim,
                         "agrees": agrees, "tokens": scored["tokens"]})
        if not agrees:
            report["problems"].append(f"{path.name} scores val_bpb {scored['val_bpb']:.8f}, the record claims {claim}")
    report.update(command="score", rescored=rescored, ok=not report["problems"])
    if args.json:
        emit_json(report)
    else:
        print_check(report)
        for r in rescored:
            print(f"rescored {r['artifact']}: val_bpb {r['val_bpb']:.8f} (claimed {r['claimed_val_bpb']}, "
                  f"{'agrees' if r['agrees'] else 'DISAGREES'})")
        if not rescored:
            print("rescored nothing: no .golf artifact in the folder (only the check ran)")
    return 0 if report["ok"] else 1


def print_report(r: dict) -> None:
    print(f"artifact   {r['artifact']} ({r['bytes_model']:,} bytes; {r['variant']}, {r['quant']}+{r['compressor']})")
    print(f"val_loss   {r['val_loss']:.8f} nats/token")
    stderr = f" ± {r['val_bpb_stderr']:.5f} (1 s.e.)" if r.get("val_bpb_stderr") is not None else ""
    print(f"val_bpb    {r['val_bpb']:.8f} ({r['label']}){stderr}")
    if r["label"] == "bound":
        print(f"monte carlo seed {r['seed']}, {r['samples']} sample(s) per window (same seed, same number)")
    print(f"tokens     {r['tokens']:,}  bytes {r['bytes']:,} from the {r['bytes_source']}  "
          f"({r['implied_bytes_per_token']:.3f} bytes/token)")
    windows = "non-overlapping" if r["stride"] == r["seq_len"] else f"sliding, stride {r['stride']}"
    print(f"windows    eval length {r['seq_len']}, {windows}")
    if r.get("ttt"):
        guard = r["score_first"]
        print(f"ttt        score-first ({r['ttt']['mode']}): {r['ttt_chunks']} chunks, {r['ttt_updates']} updates "
              f"({r['ttt_train_seconds']:.1f}s training); order checked: {guard['targets_scored']:,} targets "
              f"scored before any update read them ({guard['checks']} checks)")
        if r.get("ttt_documents") is not None:
            phases = ", ".join(f"{b:.4f}" for b in r["ttt_phase_bpb"])
            print(f"documents  {r['ttt_documents']:,} scored alone; bpb by phase (then the rest): {phases}")
    if r.get("byte_rule_note"):
        print(f"note       {r['byte_rule_note']}")
    print(f"seconds    {r['seconds']:.2f} ({r['tokens_per_s']:,.0f} tokens/s on {r['device']})")
    if r.get("forward_passes_per_window") is not None:
        options = "".join(f", {k}={v}" for k, v in r.get("options", {}).items())
        print(f"cost       {r['forward_passes_per_window']} forward pass(es) per window{options}")
    phases = ", ".join(f"{k} {v:.2f}s" for k, v in r["eval_phases_seconds"].items())
    print(f"eval clock {r['total_eval_seconds']:.2f}s of the {r['eval_cap_seconds']:.0f}s cap ({phases})")
    for key in ("audit", "sidecar_audit"):
        audit = r.get(key)
        if audit is not None:
            verdict = "ok" if audit["ok"] else "FAILED"
            what = "sidecar" if key == "sidecar_audit" else "audit  "
            print(f"{what}    {verdict}: {audit['docs_checked']} docs checked, {audit['docs_failed']} failed, "
                  f"{audit['partial']} partial (skipped)")
