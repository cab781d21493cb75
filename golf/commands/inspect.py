"""`golf inspect ARTIFACT`: where an artifact's bytes go, tensor by tensor, and what each costs in error."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from golf.commands import emit_json

EPILOG = """examples:
  golf inspect runs/demo                          # a run folder: its model.golf vs its model_raw.golf
  golf inspect model.golf --reference model_raw.golf --top 10
  golf inspect model.golf --sort name --json

Per tensor: params, scheme, raw bytes (its parts in the payload), compressed bytes attributed to
it, share of the file, bytes/param and the relative reconstruction error |w - w^|/|w| against an
unquantized reference (default: model_raw.golf beside the artifact, if there is one).

The body is compressed as a whole, so attribution is an estimate: each tensor (and the manifest)
is compressed alone with the artifact's compressor, and the real compressed body size is split
in proportion to those sizes (largest remainder, so the integers add up). With the container row
(header + SHA-256) the rows sum exactly to the file size. Slow compressors (lzma, zstd-22) take a
while on a full-size model; a progress bar shows on stderr.

--json prints one object: artifact, reference, note, variant, rows (every row, whatever --top
says: name, kind = tensor|manifest|container|unreferenced, scheme, shape, params, raw_bytes,
alone_bytes, bytes, share, bytes_per_param, rel_error) and totals (params, bytes,
bytes_per_param, limit, headroom, rule, compressor, header_bytes, digest_bytes, body_bytes,
body_raw_bytes). headroom counts model bytes only; code bytes count against the cap too."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="per-tensor bytes, bytes/param and quantization error of an artifact",
                       description=__doc__, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("artifact", type=Path, help="a .golf artifact, or a run folder holding model.golf")
    p.add_argument("--reference", type=Path, default=None,
                   help="unquantized artifact (or run folder) for the error column "
                        "(default: model_raw.golf beside the artifact)")
    p.add_argument("--sort", choices=("bytes", "name"), default="bytes",
                   help="order of tensor rows: compressed bytes, largest first (default), or name")
    p.add_argument("--top", type=_positive, default=None, metavar="N",
                   help="text mode: show only the first N tensors (the rest are summed in one row)")
    p.add_argument("--json", action="store_true", help="print one JSON object (every row) instead of text")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return n


def run(args: argparse.Namespace) -> int:
    from golf.inspect import default_reference, inspect_artifact, resolve_artifact

    artifact = resolve_artifact(args.artifact)
    reference = args.reference if args.reference is not None else default_reference(artifact)
    report = inspect_artifact(artifact, reference=reference, sort=args.sort,
                              progress=not args.no_progress and not args.json)
    if args.json:
        emit_json(report)
    else:
        print_report(report, top=args.top)
    return 0


def _error(x: float | None) -> str:
    return "n/a" if x is None else ("0" if x == 0 else f"{x:.3e}")


def print_report(r: dict[str, Any], top: int | None = None) -> None:
    t = r["totals"]
    has_ref = r["reference"] is not None
    variant = f"{r['variant']}, " if r.get("variant") else ""
    print(f"artifact   {r['artifact']} ({t['bytes']:,} bytes; {variant}{t['rule']}+{t['compressor']})")
    if r["options"]:
        print("options    " + " ".join(f"{k}={v}" for k, v in sorted(r["options"].items())))
    print(f"reference  {r['reference']}" if has_ref else f"note       {r['note']}")
    tensors = [row for row in r["rows"] if row["kind"] == "tensor"]
    shown, hidden = (tensors, []) if top is None else (tensors[:top], tensors[top:])
    rows = list(shown)
    if hidden:  # one summary row, so the bytes column still adds up to the file
        rows.append({"name": f"({len(hidden)} more tensors)", "kind": "more", "scheme": None,
                     **{k: sum(h[k] for h in hidden) for k in ("params", "raw_bytes", "bytes")}})
    rows += [row for row in r["rows"] if row["kind"] != "tensor"]
    width = max(len("tensor"), *(len(row["name"]) for row in rows), *(len(f"role {k} (000 tensors)") for k in r["by_role"]))

    def line(name: str, params: int, role: str, scheme: str, raw: int | None, nbytes: int, err: str) -> str:
        share = 100 * nbytes / t["bytes"] if t["bytes"] else 0.0
        bpp = f"{nbytes / params:.3f}" if params else ""
        text = (f"{name:<{width}}  {f'{params:,}' if params else '':>12}  {role:<8}  {scheme:<8}  {'' if raw is None else f'{raw:,}':>12}  "
                f"{nbytes:>12,}  {share:>5.1f}%  {bpp:>7}")
        return (text + (f"  {err:>9}" if has_ref else "")).rstrip()

    print(f"{'tensor':<{width}}  {'params':>12}  {'role':<8}  {'scheme':<8}  {'raw B':>12}  {'bytes':>12}  "
          f"{'share':>6}  {'B/param':>7}" + ("  rel.error" if has_ref else ""))
    for row in rows:
        err = _error(row["rel_error"]) if row["kind"] == "tensor" else ""
        print(line(row["name"], row["params"], row.get("role") or "", row["scheme"] or "", row["raw_bytes"],
                   row["bytes"], err))
    for role, group in r["by_role"].items():
        print(line(f"role {role} ({group['tensors']} tensors)", group["params"], role, "", None, group["bytes"], ""))
    if r["roles_note"]:
        print(f"note       {r['roles_note']}")
    print(line("total", t["params"], "", "", sum(row["raw_bytes"] for row in r["rows"]), t["bytes"], ""))
    state = "OVER" if t["headroom"] < 0 else "under"
    print(f"headroom   {t['headroom']:,} bytes ({state} the {t['limit']:,}-byte cap; model bytes only, "
          "code bytes count too)")
