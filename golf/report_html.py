"""The report page: one self-contained HTML file (inline CSS and SVG, no script, no fetches).

Numbers a program may want to check are in data-* attributes at full precision (the bpb table's
rows: data-name, data-kind, data-bpb, data-label, data-bytes), and the whole report is embedded
as JSON in <script type="application/json" id="golf-report-data"> (data, never executed).
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from golf.report_svg import PALETTE, line_chart, stacked_bar

# Per-byte bits → colour class: upper edges of each bucket; the last class is everything above.
BIT_EDGES = (0.5, 1, 1.5, 2, 3, 4, 5, 6, 8, 12)
# Light (cheap bytes) to dark (expensive), from the 'magma' ramp; text turns white on dark cells.
BIT_COLOURS = ("#fcfdbf", "#fde2a3", "#fec488", "#fca572", "#f8845f", "#eb6058", "#d3435f", "#b3356b",
               "#8c2981", "#641a80", "#3b0f70")

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:1180px;color:#222;padding:0 16px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
.meta{color:#666;font-size:12px}table{border-collapse:collapse;margin:6px 0}
td,th{padding:3px 10px;border-bottom:1px solid #eee;text-align:left;vertical-align:top}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
tr.golfer td{color:#555}.charts{display:flex;flex-wrap:wrap;gap:16px}
svg .title{font-size:13px;font-weight:600}svg .tick{font-size:10px;fill:#555}svg .axis{font-size:11px;fill:#333}
svg .legend{font-size:11px}svg .grid{stroke:#eee}
.multiples{display:grid;grid-template-columns:repeat(auto-fill,minmax(270px,1fr));gap:10px}
.panel{border:1px solid #ddd;border-radius:4px;padding:6px 8px}.panel h3{font-size:12px;margin:0 0 4px;font-weight:600}
.bytes{font:11px/1.5 ui-monospace,Menlo,Consolas,monospace;white-space:pre-wrap;word-break:break-all}
.legendbar span{display:inline-block;padding:1px 5px;font:11px ui-monospace,monospace}
.sample{font:12px/1.5 ui-monospace,Menlo,Consolas,monospace;white-space:pre-wrap}.sample b{background:#fff3c4}
.note{color:#666;font-size:12px;max-width:900px}
""" + "".join(f".c{i}{{background:{c}{';color:#fff' if i >= 7 else ''}}}" for i, c in enumerate(BIT_COLOURS))


def bit_class(bits: float) -> int:
    return next((i for i, edge in enumerate(BIT_EDGES) if bits < edge), len(BIT_EDGES))


def coloured_bytes(text: bytes, bits: list[float]) -> str:
    """`text` as spans coloured by bits per byte: one class per UTF-8 character (its bytes' mean),
    consecutive characters of the same class merged into one span."""
    spans: list[tuple[int, str]] = []
    i = 0
    while i < len(text):
        lead = text[i]
        width = 1 if lead < 0xC0 else 2 if lead < 0xE0 else 3 if lead < 0xF0 else 4
        chunk = text[i:i + width]
        cls = bit_class(sum(bits[i:i + width]) / len(chunk))
        char = chunk.decode("utf-8", errors="replace")
        if spans and spans[-1][0] == cls:
            spans[-1] = (cls, spans[-1][1] + char)
        else:
            spans.append((cls, char))
        i += width
    return "".join(f'<span class="c{cls}">{escape(s)}</span>' for cls, s in spans)


def _bpb_table(report: dict[str, Any]) -> str:
    g = report["golfers"]
    rows = []
    for m in report["models"]:
        s = m["score"]
        stderr = f" ± {s['val_bpb_stderr']:.4f}" if s.get("val_bpb_stderr") is not None else ""
        rows.append((m["name"], "model", s["val_bpb"], s["label"], s["bytes"], stderr,
                     f"{s['variant']}, {s['quant']}+{s['compressor']}, {s['bytes_model']:,} B artifact; "
                     f"{s['tokens']:,} targets, seq_len {s['seq_len']}"))
    for row in g["golfers"]:
        rows.append((f"{row['name']} (cold)", "golfer", row["cold"]["bpb"], row["label"], g["bytes"], "",
                     "the val text alone"))
        if "primed" in row:
            rows.append((f"{row['name']} (primed)", "golfer", row["primed"]["bpb"], row["label"], g["bytes"], "",
                         f"after {g['prime_bytes']:,} bytes of train text"))
    rows.sort(key=lambda r: r[2])
    body = "".join(
        f'<tr class="{kind}" data-name="{escape(name)}" data-kind="{kind}" data-bpb="{bpb!r}" data-label="{label}" '
        f'data-bytes="{nbytes}"><td>{escape(name)}</td><td>{kind}</td><td class="num bpb">{bpb:.4f}{stderr}</td>'
        f'<td>{label}</td><td class="num">{nbytes:,}</td><td>{escape(note)}</td></tr>'
        for name, kind, bpb, label, nbytes, stderr, note in rows)
    return ('<table id="bpb"><thead><tr><th>name</th><th>kind</th><th class="num">bpb</th><th>label</th>'
            f'<th class="num">bytes</th><th>what</th></tr></thead><tbody>{body}</tbody></table>'
            f'<p class="note">Golfers: {escape(g["rule"])}.</p>')


def _curves(report: dict[str, Any]) -> str:
    train = [(m["name"], [tuple(p) for p in m["curves"]["train_loss"]]) for m in report["models"]]
    val = [(f'{m["name"]} {kind}', [tuple(p) for p in m["curves"][key]]) for m in report["models"]
           for kind, key in (("val", "val_bpb"), ("artifact", "final_bpb")) if m["curves"][key]]
    return ('<div class="charts">'
            + line_chart(train, title="training loss", x_label="step", y_label="train loss (nats/token)")
            + line_chart(val, title="validation bpb (training weights; the artifact)", x_label="step",
                         y_label="val bpb", points=True)
            + "</div>")


def _budget(report: dict[str, Any]) -> str:
    out = []
    for m in report["models"]:
        b = m["budget"]
        legend = " ".join(f'<span style="color:{PALETTE[i % len(PALETTE)]}">■</span> {escape(name)} {value:,} B'
                          for i, (name, value) in enumerate(b["parts"]))
        out.append(f'<h3>{escape(m["name"])}: {b["bytes_total"]:,} bytes = {100 * b["bytes_total"] / b["cap"]:.2f}% '
                   f'of the {b["cap"]:,}-byte cap ({escape(b["rule"])} + {escape(b["compressor"])})</h3>'
                   f'{stacked_bar(b["parts"], total=b["bytes_total"])}<p class="note">{legend}</p>')
    return "".join(out)


def _docs(report: dict[str, Any]) -> str:
    legend = "".join(f'<span class="c{i}">{"<" if i < len(BIT_EDGES) else "≥"}'
                     f'{BIT_EDGES[min(i, len(BIT_EDGES) - 1)]:g}</span>' for i in range(len(BIT_COLOURS)))
    out = [f'<p class="legendbar">bits per byte: {legend}</p>']
    for n, doc in enumerate(report["docs"]):
        text = doc["text"]
        panels = []
        for p in doc["panels"]:
            mean = sum(p["bits"]) / max(len(p["bits"]), 1)
            panels.append(f'<div class="panel" data-name="{escape(p["name"])}" data-kind="{p["kind"]}" '
                          f'data-mean-bits="{mean!r}"><h3>{escape(p["name"])} ({p["kind"]}): {mean:.3f} bits/byte '
                          f'({p["label"]})</h3><div class="bytes">{coloured_bytes(text, p["bits"])}</div></div>')
        out.append(f'<h3>val document {n + 1} ({len(text):,} bytes)</h3><div class="multiples">{"".join(panels)}</div>')
    return "".join(out)


def _samples(report: dict[str, Any]) -> str:
    rows = []
    for s in report["samples"]:
        speed = f'{s["tokens_per_s"]:,.1f} tokens/s' if "tokens_per_s" in s else "by compressed length"
        rows.append(f'<tr class="{s["kind"]}"><td>{escape(s["name"])}</td><td>{s["kind"]}</td>'
                    f'<td class="sample">{escape(s["prompt"])}<b>{escape(s["completion"])}</b></td>'
                    f'<td>{s["new_tokens"]} steps, T={s["temperature"]}, top-k {s["top_k"] or "all"}, seed {s["seed"]}; '
                    f'{speed}</td></tr>')
    return f'<table id="samples"><tbody>{"".join(rows)}</tbody></table>'


def _json_block(report: dict[str, Any]) -> str:
    data = {**report, "docs": [{**d, "text": d["text"].decode("utf-8", errors="replace")} for d in report["docs"]]}
    # "</" inside a script element would end it early; JSON allows "<\/".
    text = json.dumps(data, sort_keys=True, allow_nan=False).replace("</", "<\\/")
    return f'<script type="application/json" id="golf-report-data">{text}</script>'


def render(report: dict[str, Any]) -> str:
    names = ", ".join(m["name"] for m in report["models"])
    max_tokens = f", first {report['max_tokens']:,} val tokens" if report["max_tokens"] else ""
    sections = [
        ("bits per byte on the val split", _bpb_table(report)),
        ("training curves (metrics.jsonl)", _curves(report)),
        ("byte budget by tensor role", _budget(report)),
        ("where each model pays: bits per byte of val documents", _docs(report)
         + '<p class="note">Models: each token\'s bits (its score on the document as one window from BOS) spread '
           "evenly over its bytes. Golfers: the bits byte i adds to the compressed size of the document so far, "
           "compressed alone from nothing (whole bytes, so 0, 8, 16 … bits).</p>"),
        ("samples", _samples(report)),
    ]
    body = "".join(f'<h2>{escape(title)}</h2><section>{html}</section>' for title, html in sections)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(report["title"])}: '
            f'{escape(names)}</title><meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<style>{CSS}</style></head><body><h1>{escape(report["title"])}</h1>'
            f'<p class="meta">{escape(names)} · val data {escape(report["data"])} (seq_len {report["seq_len"]}'
            f'{max_tokens}) · {escape(report["created"])}</p>{body}{_json_block(report)}</body></html>\n')
