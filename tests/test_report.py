"""golf report: an offline page whose numbers are the CLI's numbers, and that a real browser renders."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch

import quant
from conftest import REPO, run_cli
from golf import embedded, models

MAX_TOKENS, PRIME = "4096", "4096"


class Page(HTMLParser):
    """The report's machine-checkable parts: bpb rows, per-byte panels, embedded JSON, resource links."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, str]] = []
        self.panels: list[dict[str, str]] = []
        self.links: list[str] = []
        self.cells: list[str] = []
        self.json_text = ""
        self._in: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.links += [v for k, v in attrs if k in ("src", "href") and v]
        if tag == "tr" and "data-bpb" in a:
            self.rows.append(a)
        elif tag == "div" and a.get("class") == "panel":
            self.panels.append(a)
        elif tag == "td" and "bpb" in (a.get("class") or "") and self.rows:
            self._in = "bpb"
        elif tag == "script":
            assert a.get("type") == "application/json", "the page runs no script"
            self._in = "json"

    def handle_endtag(self, tag):
        if tag in ("td", "script"):
            self._in = None

    def handle_data(self, data):
        if self._in == "bpb":
            self.cells.append(data)
        elif self._in == "json":
            self.json_text += data


@pytest.fixture(scope="module")
def toy_artifact(tmp_path_factory):
    """A family with a Monte Carlo `bound` and no generate (tests/plugins/toybits.py), written in-process."""
    plugins = str(REPO / "tests" / "plugins")
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(plugins)
        mp.setenv(models.PLUGINS_ENV, "toybits")
        torch.manual_seed(0)
        toy = models.build("toybits", {"vocab_size": 1024, "model_dim": 32})
        meta = {"model": {"variant": "toybits", "config": toy.config_dict()},
                "tokenizer": {"sha256": embedded.EMBEDDED_TOKENIZER_SHA256},
                "eval": {"seq_len": 64, "seed": 7, "samples": 2, "batch_windows": 8}}
        path = tmp_path_factory.mktemp("toyreport") / "toy.golf"
        quant.write_artifact(path, toy.state_dict(), rule="int8", roles=toy.checked_roles(), meta=meta)
        yield path


@pytest.fixture(scope="module")
def report(trained_run, toy_artifact, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "report.html"
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(REPO / "tests" / "plugins"))
        mp.setenv(models.PLUGINS_ENV, "toybits")
        assert run_cli(["report", str(trained_run), str(toy_artifact), "-o", str(out), "--max-tokens", MAX_TOKENS,
                        "--prime-bytes", PRIME, "--docs", "2", "--doc-bytes", "120", "--tokens", "4",
                        "--no-progress"]) == 0
        scores = {}
        for name, path in (("ddp2", trained_run), ("toy", toy_artifact)):
            scores[name] = cli_json(["score", str(path), "--max-tokens", MAX_TOKENS, "--json"])
    seq_len = scores["ddp2"]["seq_len"]
    golfers = cli_json(["golfers", "--seq-len", str(seq_len), "--max-tokens", MAX_TOKENS, "--prime-bytes", PRIME,
                        "--json"])
    page = Page()
    page.feed(out.read_text(encoding="utf-8"))
    return out, page, scores, golfers


def cli_json(argv: list[str]) -> dict:
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert run_cli(argv) == 0
    return json.loads(buffer.getvalue())


def test_report_numbers_are_golf_score_and_golf_golfers_numbers(report):
    _, page, scores, golfers = report
    rows = {r["data-name"]: r for r in page.rows}
    for name, score in scores.items():
        row = rows[name]
        assert (row["data-kind"], float(row["data-bpb"]), row["data-label"], int(row["data-bytes"])) == \
            ("model", score["val_bpb"], score["label"], score["bytes"])
    assert rows["toy"]["data-label"] == "bound" and rows["ddp2"]["data-label"] == "exact"
    for g in golfers["golfers"]:
        for rule in ("cold", "primed"):
            row = rows[f"{g['name']} ({rule})"]
            assert (row["data-kind"], float(row["data-bpb"]), row["data-label"], int(row["data-bytes"])) == \
                ("golfer", g[rule]["bpb"], "exact", golfers["bytes"])
    assert len(page.rows) == len(scores) + 2 * len(golfers["golfers"])
    # The visible cells say the same numbers, rounded, in the table's (ascending bpb) order.
    shown = [float(cell.split()[0]) for cell in page.cells]
    assert shown == [round(float(r["data-bpb"]), 4) for r in page.rows] and shown == sorted(shown)
    assert scores["ddp2"]["bytes"] == golfers["bytes"]  # models and golfers divide by the same bytes


def test_report_is_self_contained_and_embeds_its_data(report, trained_run):
    _, page, scores, golfers = report
    assert page.links == []  # no external (or any) resource: the page works offline
    data = json.loads(page.json_text)
    assert [m["score"]["val_bpb"] for m in data["models"]] == [scores["ddp2"]["val_bpb"], scores["toy"]["val_bpb"]]
    assert data["golfers"]["golfers"] == golfers["golfers"]
    ddp2 = data["models"][0]
    result = json.loads((trained_run / "result.json").read_text())
    assert len(ddp2["curves"]["train_loss"]) == result["steps"]  # TRAIN_LOG_EVERY=1
    assert ddp2["curves"]["final_bpb"] == [[result["steps"], result["val_bpb"]]]
    parts = dict(ddp2["budget"]["parts"])
    assert {"role emb", "role attn", "role mlp", "role control", "manifest", "container"} <= set(parts)
    assert sum(v for k, v in parts.items() if not k.startswith("code")) == ddp2["budget"]["bytes_model"]
    # Small multiples: every document has one panel per model and per golfer.
    assert len(data["docs"]) == 2
    assert len(page.panels) == 2 * (2 + len(golfers["golfers"]))
    for doc in data["docs"]:
        assert all(len(p["bits"]) == len(doc["text"].encode()) for p in doc["panels"])
    samples = {s["name"]: s for s in data["samples"]}
    assert samples["ddp2"]["new_tokens"] == 4 and "does not implement generate" in samples["toy"]["completion"]


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of RGB(A) bytes) of an 8-bit non-interlaced PNG, decoded with zlib alone."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and colour in (2, 6) and interlace == 0
    bpp = 3 if colour == 2 else 4
    raw, stride, rows, prev = zlib.decompress(idat), width * bpp, [], bytearray(width * bpp)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up, corner = prev[i], prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + left) & 255
            elif kind == 2:
                line[i] = (line[i] + up) & 255
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 255
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, rows


def render_in_chromium(page: Path, shot: Path) -> str:
    """Render `page` headless; returns chromium's log (console messages appear as INFO:CONSOLE lines)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    assert browser, "the browser test needs Debian's chromium (.ci/run installs it: apt-get install -y chromium)"
    proc = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                           "--v=0", f"--screenshot={shot}", "--window-size=1280,1600", page.resolve().as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert shot.is_file(), proc.stderr[-2000:]
    return proc.stderr


@pytest.mark.slow
def test_chromium_renders_the_report_without_errors(report, tmp_path):
    out, *_ = report
    # The check can fail: a page that logs an error is caught, and a blank page is told apart.
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><body><script>console.error("broken")</script></body></html>')
    assert "CONSOLE" in render_in_chromium(bad, tmp_path / "bad.png")
    _, _, blank_rows = png_pixels((tmp_path / "bad.png").read_bytes())
    assert len({px for row in blank_rows for px in row}) <= 4  # all white: the blank baseline

    log = render_in_chromium(out, tmp_path / "report.png")
    assert "CONSOLE" not in log, [line for line in log.splitlines() if "CONSOLE" in line]
    width, height, rows = png_pixels((tmp_path / "report.png").read_bytes())
    assert (width, height) == (1280, 1600)
    bpp = len(rows[0]) // width
    colours = {rows[y][x * bpp:x * bpp + 3] for y in range(0, height, 4) for x in range(0, width, 4)}
    non_white = sum(rows[y][x * bpp:x * bpp + 3] != b"\xff\xff\xff" for y in range(0, height, 4)
                    for x in range(0, width, 4))
    assert len(colours) > 50 and non_white > 0.05 * (width // 4) * (height // 4)  # text, charts, colour maps
