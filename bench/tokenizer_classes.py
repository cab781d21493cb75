"""Tokenizer classes → exact / refused, and how far the official byte rule is off for each.

Trains every class of tests/tokenizer_kit.py (and, with --sweep, all 96 combinations of model
type × whitespace splitting × normalizer × extra-whitespace removal × byte fallback × vocab
1k/4k/8k) on the embedded documents, builds shards with `golf data build`'s code (which audits
every document) and counts the val split's bytes by golf's table, by the official rule
(build_sentencepiece_luts) and as the UTF-8 length of the decoded documents.

    python bench/tokenizer_classes.py --sweep --out bench/results/tokenizer_classes.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the classes live with their tests
import tokenizer_kit as kit  # noqa: E402


def run(settings: dict, root: Path, name: str) -> dict:
    work = root / name.replace(" ", "_").replace(",", "")
    work.mkdir()
    start = time.perf_counter()
    result = kit.measure(kit.train(settings, work / "tok.model"), work)
    result.pop("audit", None)
    return {"name": name, "settings": settings, **result, "seconds": round(time.perf_counter() - start, 2)}


def row(r: dict) -> str:
    if r["refused"]:
        return f"| {r['name']} | {r['vocab_size']:,} | refused by {r['refused_by']}: {r['refused']} | | | |"
    delta = r["official_rule_bytes"] - r["exact_bytes"]
    exact = "yes" if r["exact_bytes"] == r["decoded_bytes"] else "**NO**"
    official = "same" if not delta else f"{r['official_rule_bytes']:,} ({delta:+,} B, {100 * delta / r['exact_bytes']:+.4f}%)"
    return f"| {r['name']} | {r['vocab_size']:,} | {r['rule']} | {exact} | {r['exact_bytes']:,} | {official} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench/results/tokenizer_classes.json"))
    parser.add_argument("--sweep", action="store_true", help="also the 96-combination sweep (~2 min)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        classes = [run(settings, Path(tmp), name) for name, (settings, _) in kit.CLASSES.items()]
        sweep = [run(s, Path(tmp), "sweep " + "-".join(map(str, s.values()))) for s in kit.SWEEP] if args.sweep else []
    outcomes: dict[str, int] = {}
    for r in sweep:
        key = "refused" if r["refused"] else ("exact" if r["exact_bytes"] == r["decoded_bytes"] else "WRONG")
        key += "" if r["refused"] else f", official rule {'equal' if r['rule'] == 'official' else 'differs'}"
        outcomes[key] = outcomes.get(key, 0) + 1
    report = {"classes": classes, "sweep": sweep, "sweep_outcomes": outcomes}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print("| class | vocab | rule | golf = decoded | golf bytes | official rule bytes |")
    print("|---|---|---|---|---|---|")
    print("\n".join(row(r) for r in classes))
    if sweep:
        print(f"sweep of {len(sweep)}: {outcomes}")


if __name__ == "__main__":
    main()
