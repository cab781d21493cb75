"""`golf pack`: make a record folder from finished runs, or check any record folder.

    golf pack RUN_DIR [RUN_DIR ...] --name N --author A --github-id G --track T [--baseline B]
    golf pack --check RECORD_DIR
    golf pack --unpack PACKED_TRAIN_GPT DIR
"""

from __future__ import annotations

import argparse
from pathlib import Path

from golf.challenge import CAP_BYTES, EVAL_SECONDS, GPUS, TRAIN_SECONDS
from golf.commands import emit_json
from golf.errors import GolfError, one_line

EPILOG = f"""examples:
  golf pack runs/s1 runs/s2 runs/s3 --name "My_Run" --author "Ada" --github-id ada \\
            --track 10min_16mb --baseline 1.0611        # 3 seeds vs a val_bpb number
  golf pack runs/s1 runs/s2 runs/s3 ... --baseline records/track_10min_16mb/<date>_<prev>
  golf pack --check records/track_10min_16mb/2026-03-17_NaiveBaseline   # any record, ours or not
  golf pack --unpack records/.../train_gpt.py /tmp/sources             # read the embedded code

what pack writes: records/track_<track>/<YYYY-MM-DD>_<name>/ with README.md, submission.json
(schema: docs/submission-schema.md), train_seed<k>.log, requirements.txt and a self-contained
train_gpt.py (the trainer + the golf/quant modules it imports, lzma-compressed inside, loaded from
memory). Before writing, pack runs that file alone (empty folder, `python -S`, golf not importable)
for a 2-step CPU smoke, checks its embedded sources equal the repo's, and checks every run was
trained with those sources and logged exactly the sizes that ship.

size ledger:
  bytes_total = train_gpt.py + max over seeds of the model bytes + other files the code reads
  must be <= {CAP_BYTES:,} (decimal).

significance (--baseline): one-sided t-test on per-seed val_loss, H0: improvement <= 0.005 nats
(Welch with several baseline seeds, one-sample against one number), reported at p < 0.01;
fewer than 2 seeds: no test. nats <-> bpb: val_bpb = val_loss / ln 2 x tokens / bytes of the val
split; a baseline bpb is converted with the runs' own tokens/bytes.

--check never runs anything from the folder: it compiles the training script (in a memory-limited
child), decodes embedded sources as data, reads logs as text and measures files; it reads regular
files only (symlinks, FIFOs and devices are errors) within the bounds of docs/limits.md. It reads
every log dialect of the official records and grades what it finds:
  ERROR    breaks a rule or a claim no log backs: over the cap (as shipped, and as a compressed
           wrapper), a score no log shows (the mean over seeds of one evaluation, or one seed's
           when README.md or submission.json says which), a named seed without a log, a log
           named for another seed, an empty or missing required file, no/empty author or
           github_id; on the 10min_16mb track also world_size != {GPUS}, one seed trained twice,
           training past {TRAIN_SECONDS:.0f} s (up to 2 steps past after `stopping_early` is
           accepted), evaluation over {EVAL_SECONDS:.0f} s
  WARNING  real but accepted in practice: readable code that fits only as its compressed wrapper
           (what records count), logs made by another version of the file, an unstated single-seed
           headline, fewer than 3 seeds, other names (submission_x.json, train_x.py), other key
           types, README.md not stating the score or running a script the folder lacks
  note     conventions accepted (identical log copies counted once, overshoots, tokenizers)
golf's own records (schema golf.submission/1) must match exactly: their mismatches are errors.
code: the cap is checked on the code as shipped, or as golf's compressed wrapper (docstrings
dropped, lzma, base85, exec stub) when only that fits; both counts are printed.

exit codes: 0 ok; 1 a check failed (over the cap, logged sizes or sources disagree with what
ships, smoke run failed, --check found errors); 2 bad input (one-line error)."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pack", help="build a self-contained record folder from runs, or check one",
                       description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="*", type=Path, metavar="RUN_DIR", help="finished train_gpt.py runs, one per seed")
    p.add_argument("--name", help="submission name (the folder uses letters, digits, - and _ of it)")
    p.add_argument("--author", help="author's name")
    p.add_argument("--github-id", help="author's GitHub handle")
    p.add_argument("--track", choices=("10min_16mb", "non_record_16mb"), help="records/track_<TRACK>/")
    p.add_argument("--baseline", metavar="BPB_OR_RECORD_DIR", help="val_bpb to beat, or a record folder with logs")
    p.add_argument("--blurb", help="one paragraph for submission.json and the README (default: generated)")
    p.add_argument("--out", type=Path, default=Path("records"), help="records root (default: records/)")
    p.add_argument("--artifacts", action="store_true", help="also copy each seed's model as model_seed<k>.golf")
    p.add_argument("--force", action="store_true", help="replace an existing record folder")
    p.add_argument("--script", type=Path, default=None, help="trainer to pack (default: the repo's train_gpt.py)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--check", type=Path, metavar="RECORD_DIR", help="validate a record folder instead")
    mode.add_argument("--unpack", nargs=2, type=Path, metavar=("PACKED", "DIR"),
                      help="write the sources embedded in a packed train_gpt.py into DIR (new or empty)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.check is not None or args.unpack is not None:
        if args.runs:
            raise GolfError("--check and --unpack take no RUN_DIR arguments")
        return check(args) if args.check is not None else unpack(args)
    from golf.launch import train_script
    from golf.record.build import pack_record

    missing = [flag for flag, value in (("--name", args.name), ("--author", args.author),
                                        ("--github-id", args.github_id), ("--track", args.track)) if not value]
    if missing:
        raise GolfError(f"golf pack needs {', '.join(missing)} (see golf pack --help)")
    report = pack_record(args.runs, name=args.name, author=args.author, github_id=args.github_id,
                         track=args.track, out=args.out, script=args.script or train_script(),
                         baseline=args.baseline, blurb=args.blurb, force=args.force, artifacts=args.artifacts)
    if args.json:
        emit_json(report)
    else:
        print_pack(report)
    return 0 if report["ok"] else 1


def check(args: argparse.Namespace) -> int:
    from golf.record.check import check_record

    report = check_record(args.check)
    if args.json:
        emit_json(report)
    else:
        print_check(report)
    return 0 if report["ok"] else 1


def unpack(args: argparse.Namespace) -> int:
    from golf.limits import MAX_SCRIPT_BYTES
    from golf.safefiles import compile_isolated, read_text, staged_output
    from golf.selfcontained import unpack as read_payload

    packed, out = args.unpack
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise GolfError(f"{out} is not a new or empty folder; pass one")
    text = read_text(packed, MAX_SCRIPT_BYTES, "packed train_gpt.py")
    problem = compile_isolated({str(packed): text})[str(packed)]  # parsing it in-process could take GBs
    try:
        sources = None if problem else read_payload(text)
    except ValueError as e:
        raise GolfError(f"cannot read {packed}: {e}") from None
    if sources is None:
        raise GolfError(f"{packed} is not a train_gpt.py packed by golf")
    with staged_output(out) as stage:  # all files or none: a failure midway leaves no partial tree
        for name, text in sources.files().items():
            (stage / name).parent.mkdir(parents=True, exist_ok=True)
            (stage / name).write_text(text, encoding="utf-8")
    report = {"command": "pack --unpack", "out": str(out), "files": sorted(sources.files()),
              "source_sha256": sources.sha256()}
    if args.json:
        emit_json(report)
    else:
        print(f"wrote {len(report['files'])} files to {out} (sources sha256 {sources.sha256()})")
    return 0


def _print_ledger(ledger: dict) -> None:
    other = sum(ledger["bytes_other"].values())
    print(f"ledger   code {ledger['bytes_code']:,} + model max {ledger['bytes_model_max']:,} ({ledger['model_source']})"
          f" + other {other:,} = {ledger['bytes_total']:,} of {ledger['limit']:,} (headroom {ledger['headroom']:,})")


def print_check(r: dict) -> None:
    print(f"record   {r['folder']}{' (packed train_gpt.py)' if r['packed'] else ''}"
          f"{' on track ' + r['track'] if r.get('track') else ''}")
    _print_ledger(r["ledger"])
    code = r["code"]
    if code["script"]:
        print(f"code     {code['script']}{' + the files it reads' if len(code['files']) > 1 else ''}: "
              f"{code['bytes_shipped']:,} bytes as shipped, {code['bytes_wrapper']:,} as a compressed wrapper; "
              f"the cap is checked on the {'wrapper' if code['enforced'] == 'wrapper' else 'shipped bytes'}")
    for log in r["logs"]:
        print(f"log      {log['file']}: seed {log['seed']} val_loss {log['val_loss']} val_bpb {log['val_bpb']} "
              f"({log['label']}{', backs the claim' if log['backs_claim'] else ''})")
    for note in r["notes"]:
        print(f"note     {one_line(note)}")
    for warning in r["warnings"]:
        print(f"WARNING  {one_line(warning)}")
    for problem in r["problems"]:
        print(f"ERROR    {one_line(problem)}")
    if r["ok"]:
        warned = f" ({len(r['warnings'])} warning(s))" if r["warnings"] else ""
        print(f"ok       no errors{warned}")


def print_pack(r: dict) -> None:
    _print_ledger(r["ledger"])
    print(f"code     {r['packed_bytes']:,} bytes packed from {r['source_bytes']:,} bytes of source "
          f"(train_gpt.py + {r['modules']} modules)")
    if "smoke" in r:
        print(f"smoke    ran alone in {r['smoke']['seconds']} s ({r['smoke']['steps']} steps of MODEL="
              f"{r['smoke']['model']}, golf not importable)")
    if not r["ok"]:
        for problem in r["problems"]:
            print(f"PROBLEM  {problem}")
        print("nothing written")
        return
    sub, sig = r["submission"], r["significance"]
    std = f" ± {sub['val_bpb_std']:.6f}" if sub["val_bpb_std"] is not None else ""
    print(f"val_bpb  {sub['val_bpb']:.8f}{std} over {len(sub['seeds'])} seed(s) ({sub['label']})")
    if sig:
        p = "n/a" if sig["p_value"] is None else f"{sig['p_value']:.3g}"
        print(f"vs base  {sig['improvement_nats']:+.5f} nats ({sig['improvement_bpb']:+.5f} bpb), p = {p}: {sig['note']}")
    print(f"wrote    {r['folder']}/ ({', '.join(r['files'])})")
