"""Facts from a train log, read as text, in every dialect the records use.

A record ships its logs, not result.json, so checking a record means reading logs, and no two
eras of the challenge log alike. What this module reads (golf's own train.log included):

- the script's source printed into the log (first, or between two lines of '='): only lines
  shaped like log lines are matched, never code (a pattern is anchored at the line's start, or
  needs a `key:value` dump around it, and numbers where code has `{expressions}`);
- timestamp prefixes (`1776142360.538 `, `[19:23:20] `);
- seeds: `seed:1337`, `  seed: 42` (hyperparameter dumps), `seed=42` inside `key=value` dumps;
- world size: `world_size:8`, `  world_size: 8`, `ws:8` inside a dump;
- sizes: `Serialized model int8+zlib: N bytes` (the last one counts: the raw size comes first),
  `INT7+zlib model: N bytes`, `Code size: N bytes`, `Code size (uncompressed|compressed): N bytes`,
  `Total submission size …: N bytes`, `budget:N/<cap>`, `artifact:15.92MB … code:N`
  (megabytes only: an approximate model size);
- scored lines `LABEL [k:v …] val_loss:X val_bpb:Y [suffixes]` (`_exact`, sliding, stride, TTT),
  several per log (extra evaluations after the final), besides the per-step lines
  `step:N/M val_loss:…` and `N/M val_loss: X`;
- clocks: `train_time:600038ms` / `train_time: 588103ms`, `stopping_early: wallclock_cap`,
  `step_avg:43.54ms` / `avg:91.5ms`, `eval_time:Nms` on a scored line, `total_eval_time:500.1s`;
- several runs appended to one file (every seed and score is kept).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path
from typing import Any

MAX_LOG_BYTES = 64 << 20  # a log larger than this is not a train log; refuse rather than read it
_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|inf"
_PREFIX = re.compile(r"^(?:\d{9,}\.\d+\s+|\[\d\d:\d\d:\d\d\]\s+)")
_SCORED = re.compile(rf"^(?P<label>[A-Za-z][^\n]*?)\s+val_loss[:=]\s*(?P<loss>{_NUM})\s+val_bpb[:=]\s*(?P<bpb>{_NUM})"
                     r"(?P<rest>.*)$")
_STEP = re.compile(r"^(?:step[:\s]\s*)?(\d+)/(\d+)\b")
_NOT_FINAL = re.compile(r"^(?:diagnostic|pre[-_ ]?quant|post[-_]ema)", re.I)
_EVAL_MS = re.compile(r"\beval_time:\s*(\d+(?:\.\d+)?)ms")
_TRAIN_MS = re.compile(r"\btrain_time:\s*(\d+)ms")
_T_MS = re.compile(r"\st:(\d+)ms")  # ternary-style `step:1000/10000 loss:3.31 t:91478ms avg:91.5ms`
_STEP_AVG = re.compile(r"\b(?:step_)?avg:\s*([\d.]+)ms")
_DUMP_TOKEN = re.compile(r"(?:^|\s)[A-Za-z_][\w.]*[:=]\S")
_SEED_LINE = re.compile(r"^\s*seed[:=]\s?(\d+)\s*$")
_SEED_TOKEN = re.compile(r"(?:^|\s)seed[:=](\d+)(?=\s|$)")
_WORLD_LINE = re.compile(r"^\s*world_size[:=]\s?(\d+)\b")
_WORLD_TOKEN = re.compile(r"(?:^|\s)(?:world_size|ws)[:=](\d+)(?=\s|$)")
_MODEL = re.compile(r"^(?:Serialized model[^:\n]*|[\w.+-]+ model):\s*(\d+)\s*bytes")
_CODE = re.compile(r"^Code size(?:\s*\((?P<kind>[a-z]+)\))?:\s*(?P<n>\d+)")
_TOTAL = re.compile(r"^Total submission size[^:\n]*:\s*(\d+)")
_BUDGET = re.compile(r"^budget:\s*(\d+)\s*/\s*\d+")
_ARTIFACT = re.compile(r"^artifact:\s*([\d.]+)\s*MB\b(?:.*?\bcode:(\d+))?")
_STOPPING = re.compile(r"^stopping_early\b")
_TOTAL_EVAL = re.compile(r"^total_eval_time:\s*([\d.]+)\s*s\b")
_SOURCE = re.compile(r"^source_sha256:([0-9a-f]{64})\b")
_HARDWARE = re.compile(r"^hardware (.+)$")
_VAL_TOKENS = re.compile(r"^(?:val_loader:.*?tokens:|\s*val_tokens:\s*)(\d+)")
NAME_SEED = re.compile(r"(?:seed|(?<=_)s)[_-]?(\d+)(?=\D*$)|_(\d+)\.(?:log|txt)$")


@dataclasses.dataclass(frozen=True)
class Score:
    """One scored line that is not a training step: a candidate for the run's final score."""
    label: str  # as logged, e.g. final_int6_sliding_window_exact
    val_loss: float
    val_bpb: float
    eval_ms: float | None
    line: int

    @property
    def family(self) -> str:
        """The evaluation, whatever its precision: `final_x_exact stride:64` → `final_x`."""
        return self.label.split()[0].lower().removesuffix("_exact")


@dataclasses.dataclass
class LogFacts:
    path: Path
    name: str = ""  # the path inside the record folder, for messages
    digest: str = ""  # sha256 of the bytes: identical copies are one log
    final_label: str | None = None  # the score a golf run reports: the last `*_exact` line, else the last score
    val_loss: float | None = None
    val_bpb: float | None = None
    scores: list[Score] = dataclasses.field(default_factory=list)
    bytes_model: int | None = None
    bytes_model_approx: int | None = None  # from a megabytes-only line, ±5,000 bytes
    bytes_code: int | None = None  # the code size the run counted (the compressed one when both are logged)
    bytes_code_uncompressed: int | None = None
    bytes_total: int | None = None
    seed: int | None = None
    seeds: tuple[int, ...] = ()  # every seed the file declares (one per appended run)
    name_seed: int | None = None  # the seed in the file name (train_seed42.log, ternary_log_7.txt)
    world_sizes: tuple[int, ...] = ()
    steps: int | None = None
    trained: bool = False  # it has training steps (an eval-only or summary log has none)
    stopped_early: bool = False
    train_time_ms: int | None = None  # the longest train_time logged (per run, the last one)
    step_avg_ms: float | None = None
    total_eval_ms: float | None = None
    source_sha256: str | None = None
    hardware: str | None = None
    val_tokens: int | None = None

    def __post_init__(self) -> None:
        self.name = self.name or self.path.name


def _body(line: str) -> str:
    return _PREFIX.sub("", line, count=1)


def _is_dump(line: str) -> bool:
    """A `key:value key=value …` line (a hyperparameter dump), not prose or code."""
    return len(_DUMP_TOKEN.findall(line)) >= 3 and "(" not in line


def final_score(scores: list[Score]) -> Score | None:
    """The score a golf run reports: the last `*_exact` line (full precision), else the last one."""
    exact = [s for s in scores if s.label.split()[0].endswith("_exact")]
    return (exact or scores or [None])[-1]


def _scored(body: str, number: int) -> Score | None:
    m = _SCORED.match(body)
    if m is None or _STEP.match(body) or _NOT_FINAL.match(m["label"]):
        return None
    eval_ms = _EVAL_MS.search(m["rest"])
    return Score(m["label"].strip(), float(m["loss"]), float(m["bpb"]), float(eval_ms[1]) if eval_ms else None, number)


def _read_line(facts: LogFacts, body: str, number: int, state: dict[str, Any]) -> None:
    score = _scored(body, number)
    if score is not None:
        facts.scores.append(score)
        return
    step = _STEP.match(body)
    if step and ("train_time" in body or "loss" in body or " t:" in body):
        facts.steps = max(facts.steps or 0, int(step[1]))
        facts.trained = facts.trained or "train" in body or " t:" in body
        train = _TRAIN_MS.search(body) or _T_MS.search(body)
        if train is not None:
            facts.train_time_ms = max(facts.train_time_ms or 0, int(train[1]))
        avg = _STEP_AVG.search(body)
        if avg is not None:
            facts.step_avg_ms = float(avg[1])
        return
    if _STOPPING.match(body):
        facts.trained = facts.stopped_early = True
        train = _TRAIN_MS.search(body)
        if train is not None:
            facts.train_time_ms = max(facts.train_time_ms or 0, int(train[1]))
        return
    seed = _SEED_LINE.match(body) or (_SEED_TOKEN.search(body) if _is_dump(body) else None)
    if seed is not None:
        state["seeds"].append(int(seed[1]))
    world = _WORLD_LINE.match(body) or (_WORLD_TOKEN.search(body) if _is_dump(body) else None)
    if world is not None:
        state["world"].append(int(world[1]))
    for pattern, key in ((_MODEL, "model"), (_TOTAL, "total"), (_BUDGET, "total"), (_SOURCE, "sha"),
                         (_HARDWARE, "hardware"), (_VAL_TOKENS, "val_tokens"), (_TOTAL_EVAL, "eval")):
        m = pattern.match(body)
        if m is not None:
            state[key] = m[1]
    code = _CODE.match(body)
    if code is not None:
        state["code_uncompressed" if code["kind"] == "uncompressed" else "code"] = code["n"]
    artifact = _ARTIFACT.match(body)
    if artifact is not None:
        state["model_mb"] = artifact[1]
        if artifact[2]:
            state["code"] = artifact[2]


def _int(value: str | None) -> int | None:
    return int(value) if value is not None else None


def _name_seed(name: str) -> int | None:
    m = NAME_SEED.search(name)
    return int(m[1] or m[2]) if m else None


def parse_log(path: Path, name: str | None = None) -> LogFacts:
    if path.stat().st_size > MAX_LOG_BYTES:
        raise ValueError(f"{path.name} is {path.stat().st_size} bytes, larger than any train log")
    raw = path.read_bytes()
    facts = LogFacts(path, name or path.name, hashlib.sha256(raw).hexdigest())
    state: dict[str, Any] = {"seeds": [], "world": []}
    for number, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), 1):
        _read_line(facts, _body(line), number, state)
    final = final_score(facts.scores)
    if final is not None:
        facts.final_label, facts.val_loss, facts.val_bpb = final.label, final.val_loss, final.val_bpb
    # a file with neither training nor a score is a summary, not a run: its seed lines name other runs
    facts.seeds = tuple(dict.fromkeys(state["seeds"])) if facts.trained or facts.scores else ()
    facts.seed = facts.seeds[0] if facts.seeds else None
    facts.name_seed = _name_seed(path.name)
    facts.world_sizes = tuple(dict.fromkeys(state["world"]))
    facts.bytes_code, facts.bytes_code_uncompressed = _int(state.get("code")), _int(state.get("code_uncompressed"))
    facts.bytes_total, facts.bytes_model = _int(state.get("total")), _int(state.get("model"))
    if facts.bytes_model is None and None not in (facts.bytes_total, facts.bytes_code):
        facts.bytes_model = facts.bytes_total - facts.bytes_code  # e.g. `budget:` total and `code:` only
    if facts.bytes_model is None and "model_mb" in state:
        facts.bytes_model_approx = round(float(state["model_mb"]) * 1e6)
    if facts.step_avg_ms is None and facts.train_time_ms and facts.steps:
        facts.step_avg_ms = facts.train_time_ms / facts.steps
    facts.total_eval_ms = float(state["eval"]) * 1000 if "eval" in state else None
    facts.source_sha256, facts.hardware = state.get("sha"), state.get("hardware")
    facts.val_tokens = _int(state.get("val_tokens"))
    return facts


def is_log_name(name: str) -> bool:
    """Train logs as records name them: *.log, or *.txt other than requirements.txt."""
    return name.endswith(".log") or (name.endswith(".txt") and name != "requirements.txt")
