"""`golf data`: build shards from documents, train a tokenizer, fetch the official data, inspect shards."""

from __future__ import annotations

import argparse
import glob
import sys
from pathlib import Path
from typing import Any

from golf.commands import emit_json

RAW = argparse.RawDescriptionHelpFormatter

BUILD_EPILOG = """examples:
  golf data build docs.jsonl --out data/datasets/mine_sp1024 --val-docs 50
  golf data build corpus/ --tokenizer tok.model --out shards --val-docs 1000 --json
  golf data build docs_selected.jsonl --tokenizer data/tokenizers/fineweb_1024_bpe.model \\
                  --out data/datasets/fineweb10B_sp1024 --val-docs 50000   # the official export

Each document becomes [BOS] + its token ids (no EOS), in input order. The first --val-docs
documents form fineweb_val_*.bin, the rest fineweb_train_*.bin; shards hold at most
--shard-tokens tokens and a document may straddle two shards, as in the official export.
DOCS are .jsonl files (one {"text": ...} object per line), .txt files (one document each), or
folders of those (sorted by name). Shards are written beside --out and moved in only once every
document is in, so a failure (a bad document, a full disk) leaves --out as it was.

Every build runs the byte audit: each document is decoded back and must give its (normalized)
text, with the byte table crediting exactly its UTF-8 length. A document holding <unk> or one
that does not round-trip stops the build with one line, before any shard is written; old
shards stay untouched. Where golf's exact count differs from the official rule, both are shown."""

TOKENIZER_EPILOG = """examples:
  golf data tokenizer docs.jsonl --out tokenizers/fineweb_4096_bpe --vocab-size 4096
  golf data tokenizer docs_selected.jsonl --out tok/sp8192 --vocab-size 8192 --max-docs 5000000

Trains a SentencePiece BPE with the challenge's settings (byte fallback, always: no character
becomes <unk>; split digits, nmt_nfkc, no dummy prefix, pad/bos/eos/unk = 0/1/2/3) and writes
PREFIX.model and PREFIX.vocab, only if golf can count its bytes exactly. Then
`golf data build DOCS --tokenizer PREFIX.model ...` makes shards with it. Documents longer than
sentencepiece's max_sentence_length (4192 bytes) are skipped by its trainer, as officially.
An existing PREFIX.model or PREFIX.vocab is never overwritten, and a failed training writes neither."""

FETCH_EPILOG = """examples:
  golf data fetch --train-shards 1                        # val + 1 train shard (~0.3 GB) into ./data
  golf data fetch --variant sp1024 --train-shards 80 --out /data/golf
  golf data fetch --variant sp8192 --train-shards 10 --repo-id kevclark/parameter-golf

Downloads from the Hugging Face dataset repo (default willdepueoai/parameter-golf, or
$MATCHED_FINEWEB_REPO_ID; remote root $MATCHED_FINEWEB_REMOTE_ROOT_PREFIX, default 'datasets').
Shards land in OUT/datasets/fineweb10B_VARIANT/ and the tokenizer in OUT/tokenizers/, the
layout train_gpt.py expects. Each train shard is 100M tokens (200 MB). Files already complete
are skipped, so an interrupted fetch can simply be re-run."""

INFO_EPILOG = """examples:
  golf data info data/datasets/fineweb10B_sp1024
  golf data info 'data/datasets/fineweb10B_sp1024/fineweb_val_*.bin' --vocab-size 1024 --json
  golf data info --tokenizer tok/sp8192.model          # how golf counts this tokenizer's bytes

Checks every shard's header and size (cheap); with --vocab-size also reads every token and
checks ids are below it. --tokenizer classifies a SentencePiece model (normalizer, whitespace
handling, fallback, piece types) and says which byte rule applies: the official rule (exact
for it), golf's exact count (where the official rule would miscount, and why), or a refusal.
Exit code 1 if any shard is bad or the tokenizer is refused. See docs/tokenizers.md."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="build, tokenize, fetch and inspect token shards",
                       description=__doc__, formatter_class=RAW,
                       epilog="Run `golf data SUBCOMMAND --help` for options and examples.")
    p.set_defaults(func=lambda args: _print_help(p))
    dsub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")

    b = dsub.add_parser("build", help="tokenize documents into val/train shards",
                        description="Tokenize documents into challenge shards.", epilog=BUILD_EPILOG,
                        formatter_class=RAW)
    b.add_argument("docs", nargs="+", type=Path, metavar="DOCS", help=".jsonl/.txt files or folders")
    b.add_argument("--tokenizer", default="embedded",
                   help="sentencepiece .model; 'embedded' = golf's copy of the challenge sp1024 (default)")
    b.add_argument("--out", type=Path, required=True, help="output folder for fineweb_{val,train}_*.bin")
    b.add_argument("--val-docs", type=int, required=True, help="the first N documents form the val split")
    b.add_argument("--shard-tokens", type=int, default=100_000_000, help="max tokens per shard (default 1e8)")
    b.add_argument("--force", action="store_true", help="replace shards already in --out")
    _common(b, run_build)

    t = dsub.add_parser("tokenizer", help="train a SentencePiece BPE tokenizer the official way",
                        description="Train a SentencePiece BPE tokenizer.", epilog=TOKENIZER_EPILOG,
                        formatter_class=RAW)
    t.add_argument("docs", nargs="+", type=Path, metavar="DOCS", help=".jsonl/.txt files or folders")
    t.add_argument("--out", type=Path, required=True, metavar="PREFIX", help="writes PREFIX.model and PREFIX.vocab")
    t.add_argument("--vocab-size", type=int, required=True, help="number of pieces, e.g. 1024 or 8192")
    t.add_argument("--max-docs", type=int, default=None, help="train on the first N documents only")
    _common(t, run_tokenizer)

    f = dsub.add_parser("fetch", help="download the official shards and tokenizer from Hugging Face",
                        description="Download the official cached FineWeb shards and tokenizer.",
                        epilog=FETCH_EPILOG, formatter_class=RAW)
    f.add_argument("--variant", default="sp1024", help="sp<VOCAB_SIZE> or byte260 (default sp1024)")
    f.add_argument("--train-shards", type=int, required=True, help="how many train shards (all val shards always)")
    f.add_argument("--out", type=Path, default=Path("data"), help="output root (default ./data)")
    f.add_argument("--repo-id", default=None, help="hub dataset repo (default willdepueoai/parameter-golf)")
    f.add_argument("--with-docs", action="store_true",
                   help="also fetch docs_selected.jsonl (the raw documents, for retokenizing; large)")
    f.add_argument("--base-url", default="https://huggingface.co", help="hub or mirror URL (file:// works)")
    _common(f, run_fetch)

    i = dsub.add_parser("info", help="list shards with token counts and validate them",
                        description="List and validate token shards.", epilog=INFO_EPILOG, formatter_class=RAW)
    i.add_argument("path", nargs="?", help="a shard, a folder of fineweb_*.bin shards, or a glob")
    i.add_argument("--tokenizer", default=None, metavar="MODEL",
                   help="also classify this sentencepiece .model ('embedded' = golf's sp1024)")
    i.add_argument("--vocab-size", type=int, default=None, help="also check every token id is below this")
    i.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    i.set_defaults(func=run_info)


def _common(p: argparse.ArgumentParser, func: Any) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON summary object instead of text")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=func)


def _print_help(p: argparse.ArgumentParser) -> int:
    p.print_help(sys.stderr)
    return 2


def _progress(args: argparse.Namespace) -> bool:
    return not args.no_progress and not args.json


def run_build(args: argparse.Namespace) -> int:
    from golf.corpus import build_shards

    if args.tokenizer == "embedded":
        from golf import embedded
        tokenizer = embedded.tokenizer_path()
    else:
        tokenizer = Path(args.tokenizer)
    summary = build_shards(args.docs, tokenizer, args.out, num_val_docs=args.val_docs,
                           shard_tokens=args.shard_tokens, overwrite=args.force, progress=_progress(args))
    if args.json:
        emit_json(summary)
    else:
        for split in ("val", "train"):
            s = summary[split]
            print(f"{split:5} {s['docs']:>9,} docs {s['tokens']:>14,} tokens {s['shards']:>4} shards")
        print(f"wrote {args.out} with {summary['tokenizer']} (vocab {summary['vocab_size']}, "
              f"sha256 {summary['tokenizer_sha256'][:16]})")
        print(audit_line(summary["audit"]))
        for warning in summary["audit"]["warnings"]:
            print(f"warning: {warning}")
    return 0


def audit_line(audit: dict[str, Any]) -> str:
    line = f"byte audit: {audit['docs']:,} docs decode back to their text, {audit['bytes']:,} bytes"
    if audit["official_rule_bytes"] == audit["bytes"]:
        return line + " (exact; the official rule counts the same)"
    change = 100 * (audit["official_rule_bytes"] / audit["bytes"] - 1)
    return line + (f" (exact; the official rule would count {audit['official_rule_bytes']:,}, {change:+.3f}%, "
                   "so golf scores with the exact count)")


def run_tokenizer(args: argparse.Namespace) -> int:
    from golf.bpb import load_tokenizer
    from golf.corpus import train_tokenizer
    from golf.tokenizers import classify_tokenizer

    model = train_tokenizer(args.docs, args.out, vocab_size=args.vocab_size, max_docs=args.max_docs,
                            progress=_progress(args))
    sp = load_tokenizer(model)
    rule = classify_tokenizer(sp).rule
    if args.json:
        emit_json({"model": str(model), "vocab": str(model.with_suffix(".vocab")), "vocab_size": sp.vocab_size(),
                   "byte_rule": rule})
    else:
        print(f"wrote {model} and {model.with_suffix('.vocab')} ({sp.vocab_size()} pieces, byte fallback, "
              f"bytes counted by the {rule} rule)")
    return 0


def run_fetch(args: argparse.Namespace) -> int:
    from golf.fetch import fetch

    summary = fetch(args.variant, args.train_shards, args.out, repo_id=args.repo_id, base_url=args.base_url,
                    with_docs=args.with_docs, progress=_progress(args))
    if args.json:
        emit_json(summary)
    else:
        print(f"{len(summary['downloaded'])} files downloaded ({summary['bytes_downloaded']:,} bytes), "
              f"{len(summary['skipped'])} already present")
        print(f"DATA_PATH={summary['data_path']} TOKENIZER_PATH={summary['tokenizer_files'][0]}")
    return 0


def run_info(args: argparse.Namespace) -> int:
    from golf.errors import GolfError

    if args.path is None and args.tokenizer is None:
        raise GolfError("golf data info needs a shard path, --tokenizer MODEL, or both")
    report: dict[str, Any] = {}
    if args.tokenizer is not None:
        report["tokenizer"] = _tokenizer_info(args.tokenizer)
    if args.path is not None:
        report.update(_shards_info(args.path, args.vocab_size))
    report["ok"] = report.get("tokenizer", {}).get("rule") != "refused" and all(
        s["ok"] for s in report.get("shards", []))
    if args.json:
        emit_json(report)
    else:
        if "tokenizer" in report:
            print("\n".join(describe_tokenizer(report["tokenizer"])))
        if "shards" in report:
            _print_shards(report)
    return 0 if report["ok"] else 1


def _tokenizer_info(name: str) -> dict[str, Any]:
    from golf import embedded
    from golf.bpb import load_tokenizer
    from golf.tokenizers import classify_tokenizer

    path = embedded.tokenizer_path() if name == "embedded" else Path(name)
    return {"path": str(path), "sha256": embedded.file_sha256(path),
            **classify_tokenizer(load_tokenizer(path)).as_dict()}


def describe_tokenizer(t: dict[str, Any]) -> list[str]:
    """The classification of `golf data info --tokenizer`, one aspect per line."""
    pieces = ", ".join(f"{n:,} {kind.replace('_', '-')}" for kind, n in t["pieces"].items())
    on = {True: "on", False: "off"}
    lines = [
        f"tokenizer   {t['path']} (sha256 {t['sha256'][:16]})",
        f"model       {t['model_type']}, {t['vocab_size']:,} pieces: {pieces}",
        f"normalizer  {t['normalizer']}, remove_extra_whitespaces {on[t['remove_extra_whitespaces']]}, "
        f"add_dummy_prefix {on[t['add_dummy_prefix']]}, escape_whitespaces {on[t['escape_whitespaces']]}",
        f"whitespace  '▁' {'ends' if t['treat_whitespace_as_suffix'] else 'starts'} pieces, split_by_whitespace "
        f"{on[t['split_by_whitespace']]}, {t['inner_space_pieces']:,} pieces with a '▁' besides a leading one",
        "fallback    " + ("byte fallback: characters outside the alphabet are <0xNN> byte pieces" if t["byte_fallback"]
                          else "no byte fallback: characters outside the alphabet become <unk>, and scored data "
                               "holding <unk> is refused"),
    ]
    lines += [f"warning     {warning}" for warning in t["warnings"]]
    if t["rule"] == "refused":
        return [*lines, f"bytes       REFUSED: {t['refusal']}"]
    if t["rule"] == "official":
        return [*lines, "bytes       exact; golf's table equals the official rule (build_sentencepiece_luts)"]
    return [*lines, "bytes       exact, by golf's table; the official rule (build_sentencepiece_luts) miscounts:",
            *(f"              - {why}" for why in t["differences"])]


def _shards_info(path: str, vocab_size: int | None) -> dict[str, Any]:
    from golf.data import read_shard, shard_token_count
    from golf.errors import GolfError

    shards = []
    for shard in _info_files(path):
        try:
            tokens = len(read_shard(shard, vocab_size)) if vocab_size is not None else shard_token_count(shard)
            shards.append({"path": str(shard), "tokens": tokens, "ok": True, "error": None})
        except GolfError as exc:
            shards.append({"path": str(shard), "tokens": None, "ok": False, "error": str(exc)})
    totals = {split: sum(s["tokens"] or 0 for s in shards if Path(s["path"]).name.startswith(f"fineweb_{split}_"))
              for split in ("val", "train")}
    return {"shards": shards, "tokens": totals}


def _print_shards(report: dict[str, Any]) -> None:
    shards, totals = report["shards"], report["tokens"]
    for s in shards:
        print(f"{s['tokens']:>14,}  {s['path']}" if s["ok"] else f"{'BAD':>14}  {s['error']}")
    bad = sum(not s["ok"] for s in shards)
    print(f"{len(shards)} shards, val {totals['val']:,} tokens, train {totals['train']:,} tokens"
          + (f", {bad} BAD" if bad else ""))


def _info_files(path: str) -> list[Path]:
    """A folder's val then train shards, else the files a path or glob names."""
    from golf.errors import GolfError

    folder = Path(path)
    if folder.is_dir():
        files = [*sorted(folder.glob("fineweb_val_*.bin")), *sorted(folder.glob("fineweb_train_*.bin"))]
    else:
        files = sorted(Path(p) for p in glob.glob(path))
    if not files:
        raise GolfError(f"no shards found at {path} (a shard, a folder of fineweb_*.bin shards, or a glob)")
    return files
