"""`golf pack --check` over a corpus of record folders, tabulated and judged.

    python bench/records_conformance.py CORPUS [--judgments bench/records_judgments.json]

CORPUS is a folder of record folders (`CORPUS/track_*/<date>_<name>/`, as in the official
repository's records/). Every folder is checked as `golf pack --check` does (nothing in it is
run); the table lists each folder's verdict and every error and warning it got. A judgments file
(written by a person who read the folders' files) says for each reported problem whether it is
real or a false alarm, and lists defects found by reading that the check does not report; the
table joins them, and counts what no judgment covers, so a change in the checker shows up as
unjudged rows instead of silently inheriting old verdicts.

Writes bench/results/records_conformance.json and .md (or --out PREFIX).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from golf.record.check import check_record

HERE = Path(__file__).resolve().parent


def record_folders(corpus: Path) -> list[Path]:
    """Folders under track_* folders, or the corpus's own subfolders if it has no track_* level."""
    tracks = sorted(p for p in corpus.glob("track_*") if p.is_dir())
    return sorted(p for t in tracks for p in t.iterdir() if p.is_dir()) if tracks else \
        sorted(p for p in corpus.iterdir() if p.is_dir())


def judge(message: str, judgments: list[list[str]]) -> tuple[str, str]:
    """(verdict, why) of the first judgment whose text occurs in the message."""
    for text, verdict, why in judgments:
        if text in message:
            return verdict, why
    return "unjudged", ""


def run(corpus: Path, judgments: dict[str, Any]) -> dict[str, Any]:
    rows = []
    for folder in tqdm(record_folders(corpus), desc="pack --check", unit="folder"):
        started = time.perf_counter()
        report = check_record(folder)
        seconds = time.perf_counter() - started
        judged = judgments.get("folders", {}).get(folder.name, {})
        findings = []
        for grade, key in (("error", "problems"), ("warning", "warnings")):
            for message in report[key]:
                verdict, why = judge(message, judged.get("judgments", []))
                findings.append({"grade": grade, "message": message, "verdict": verdict, "why": why})
        false_errors = [f for f in findings if f["grade"] == "error" and f["verdict"] == "false alarm"]
        rows.append({"folder": folder.name, "track": report["track"], "ok": report["ok"], "seconds": round(seconds, 3),
                     "findings": findings, "notes": report["notes"], "ledger": report["ledger"],
                     "code": {k: v for k, v in report["code"].items() if k != "files"},
                     "fails_on_false_alarm": bool(false_errors) and not any(
                         f["grade"] == "error" and f["verdict"] == "real" for f in findings),
                     "unreported": judged.get("unreported", [])})
    every = [f for r in rows for f in r["findings"]]
    summary = {
        "folders": len(rows), "pass": sum(r["ok"] for r in rows), "fail": sum(not r["ok"] for r in rows),
        "errors": sum(f["grade"] == "error" for f in every), "warnings": sum(f["grade"] == "warning" for f in every),
        "notes": sum(len(r["notes"]) for r in rows),
        "judged_real": sum(f["verdict"] == "real" for f in every),
        "judged_false_alarm": sum(f["verdict"] == "false alarm" for f in every),
        "unjudged": sum(f["verdict"] == "unjudged" for f in every),
        "false_alarm_errors": sum(f["grade"] == "error" and f["verdict"] == "false alarm" for f in every),
        "folders_failing_on_a_false_alarm": sum(r["fails_on_false_alarm"] for r in rows),
        "unreported_defects": sum(len(r["unreported"]) for r in rows),
        "seconds_total": round(sum(r["seconds"] for r in rows), 2),
    }
    return {"corpus": str(corpus), "corpus_source": judgments.get("corpus"), "summary": summary, "rows": rows}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(result: dict[str, Any]) -> str:
    s = result["summary"]
    out = [f"{s['folders']} folders: {s['pass']} pass, {s['fail']} fail; {s['errors']} errors and {s['warnings']} "
           f"warnings reported ({s['notes']} notes). Judged: {s['judged_real']} real, {s['judged_false_alarm']} "
           f"false alarms ({s['false_alarm_errors']} of them errors), {s['unjudged']} unjudged. Folders failing on a "
           f"false alarm: {s['folders_failing_on_a_false_alarm']}. Defects found by reading that the check does "
           f"not report: {s['unreported_defects']}. Check time, all folders: {s['seconds_total']} s.", "",
           "| folder | verdict | grade | reported | judged | why |", "|---|---|---|---|---|---|"]
    for r in result["rows"]:
        verdict = "pass" if r["ok"] else "**fail**"
        items = r["findings"] or [{"grade": "", "message": "(nothing)", "verdict": "", "why": ""}]
        for i, f in enumerate(items):
            head = f"`{r['folder']}` ({r['track']})" if i == 0 else ""
            out.append(f"| {head} | {verdict if i == 0 else ''} | {f['grade']} | {_cell(f['message'])} | "
                       f"{f['verdict']} | {_cell(f['why'])} |")
        for defect, why in r["unreported"]:
            out.append(f"| | | not reported | {_cell(defect)} | real, not checked | {_cell(why)} |")
    return "\n".join(out) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", type=Path, help="folder of record folders (track_*/<date>_<name>/)")
    parser.add_argument("--judgments", type=Path, default=HERE / "records_judgments.json")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "records_conformance",
                        help="output prefix: writes PREFIX.json and PREFIX.md")
    args = parser.parse_args()
    judgments = json.loads(args.judgments.read_text()) if args.judgments.is_file() else {}
    result = run(args.corpus, judgments)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(result))
    print(json.dumps(result["summary"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
