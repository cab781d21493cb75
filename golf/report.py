"""`golf report RUN_DIR… -o report.html`: the numbers behind the page, gathered from their sources.

Every number comes from the function that owns it, so the page cannot disagree with the CLI:
bpb from `golf.score.score_artifact` (as `golf score --json`), golfers from
`golf.golfers.score_golfers` (as `golf golfers --json`, on the same val tokens as the first
model), curves from each run's metrics.jsonl, the byte budget from `golf.inspect.inspect_artifact`
(by tensor role) plus the run's code bytes, samples from `golf.generate` and golfer sampling.

Per-byte bits of a few val documents: a model's per-token nats (its `score` on the document as
one window starting at BOS), in bits, spread evenly over the bytes the token is credited with; a
golfer's from compressing the document's prefixes (golf.golfers.golfer_byte_bits). Rendering is
golf.report_html.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from golf.bpb import load_tokenizer
from golf.challenge import CAP_BYTES
from golf.data import find_shards, load_val_tokens
from golf.errors import GolfError
from golf.generate import generate_text
from golf.golfers import DEFAULT_PRIME_BYTES, golfer_byte_bits, golfer_samples, score_golfers
from golf.inspect import inspect_artifact, resolve_artifact
from golf.score import batch_generator, model_from_artifact, score_artifact
from golf.textbytes import CreditedBytes
from quant import read_artifact

LN2 = math.log(2.0)


def run_name(path: Path) -> str:
    return path.name if path.is_dir() else path.stem


def read_metrics(path: Path) -> dict[str, list[list[float]]]:
    """Curves from metrics.jsonl: train loss and val bpb against step (missing file: no curves)."""
    curves: dict[str, list[list[float]]] = {"train_loss": [], "val_bpb": [], "final_bpb": []}
    if not path.is_file():
        return curves
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            row = json.loads(line)
        except ValueError:
            raise GolfError(f"{path}:{n}: not a JSON line") from None
        key = {"train": "train_loss", "val": "val_bpb", "final": "final_bpb"}.get(row.get("kind"))
        value = row.get("train_loss" if key == "train_loss" else "val_bpb")
        if key and isinstance(row.get("step"), int) and isinstance(value, (int, float)):
            curves[key].append([row["step"], float(value)])
    return curves


def byte_budget(artifact: Path, result: dict[str, Any]) -> dict[str, Any]:
    """The artifact's bytes by tensor role (+ manifest, container) and the run's code bytes."""
    ledger = inspect_artifact(artifact)
    parts = [[f"role {role}", group["bytes"]] for role, group in ledger["by_role"].items()]
    parts += [[row["name"], row["bytes"]] for row in ledger["rows"] if row["kind"] != "tensor"]
    code = result.get("bytes_code")
    if isinstance(code, int):
        parts.append(["code (train_gpt.py)", code])
    return {"parts": parts, "bytes_model": ledger["totals"]["bytes"], "bytes_code": code,
            "bytes_total": sum(p[1] for p in parts), "cap": CAP_BYTES, "rule": ledger["totals"]["rule"],
            "compressor": ledger["totals"]["compressor"], "by_role": ledger["by_role"]}


def sample_docs(tokens: torch.Tensor, bos: int, count: int, max_bytes: int, max_tokens: int,
                rule: CreditedBytes) -> list[torch.Tensor]:
    """The first `count` documents of the val tokens as windows [BOS, doc…], each cut at a token
    boundary to at most `max_bytes` credited bytes and `max_tokens` targets."""
    starts = (tokens == bos).nonzero().flatten().tolist()
    windows = []
    for start, end in zip(starts, starts[1:] + [tokens.numel()]):
        window = tokens[start:min(end, start + max_tokens + 1)]
        lengths = torch.tensor([len(b) for b in rule.targets(window)]).cumsum(0)
        window = window[: 1 + int((lengths <= max_bytes).sum())]
        if window.numel() > 1:
            windows.append(window)
        if len(windows) == count:
            break
    return windows


@torch.inference_mode()
def model_byte_bits(model: torch.nn.Module, window: torch.Tensor, rule: CreditedBytes, *, seed: int,
                    samples: int) -> list[float]:
    """Bits per credited byte of `window`'s targets under `model` (a token's bits spread evenly).
    A Monte Carlo model draws with the seed and samples its artifact records, as `golf score` does."""
    out = model.score(window[None], generator=batch_generator(seed, 0, window.device), samples=samples)
    bits = (out.nats[0].double() / LN2).tolist()
    per_byte: list[float] = []
    for token_bits, text in zip(bits, rule.targets(window)):
        per_byte += [token_bits / len(text)] * len(text)
    return per_byte


def score_models(paths: list[Path], *, data: Path, tokenizer: Path, max_tokens: int | None,
                 progress: bool) -> list[dict[str, Any]]:
    """Per run: its name, artifact, `golf score` report, curves and byte budget."""
    if not paths:
        raise GolfError("give at least one run folder or artifact")
    names = [run_name(p) for p in paths]
    if len(set(names)) != len(names):
        raise GolfError(f"runs need distinct names, got {', '.join(names)}")
    models = []
    for path, name in zip(paths, names):
        artifact = resolve_artifact(path)
        if not artifact.is_file():
            raise GolfError(f"no artifact at {artifact}")
        folder = artifact.parent
        result = json.loads((folder / "result.json").read_text()) if (folder / "result.json").is_file() else {}
        score = score_artifact(artifact, data=data, tokenizer=tokenizer, max_tokens=max_tokens, progress=progress)
        models.append({"name": name, "artifact": str(artifact), "score": score,
                       "curves": read_metrics(folder / "metrics.jsonl"), "budget": byte_budget(artifact, result)})
    return models


def per_byte_docs(models: list[dict[str, Any]], golfers: list[str], *, data: Path, tokenizer: Path, seq_len: int,
                  docs: int, doc_bytes: int, progress: bool) -> list[dict[str, Any]]:
    """The first `docs` val documents (cut to `doc_bytes`), each with one panel of per-byte bits
    per model and per golfer. They come from the whole val split: --max-tokens may hold less than one."""
    sp = load_tokenizer(tokenizer)
    rule = CreditedBytes(sp)
    tokens = load_val_tokens(find_shards(data, "val"), seq_len, vocab_size=sp.vocab_size())
    windows = sample_docs(tokens, sp.bos_id(), docs, doc_bytes, seq_len, rule)
    rows = [{"text": b"".join(rule.targets(w)), "panels": []} for w in windows]
    for entry in tqdm(models, desc="per-byte bits", disable=not progress or None, leave=False):
        stored = read_artifact(Path(entry["artifact"]))
        model = model_from_artifact(stored.meta, stored.state_dict).eval()
        draws = {"seed": entry["score"]["seed"], "samples": entry["score"]["samples"]}
        for row, window in zip(rows, windows):
            row["panels"].append({"name": entry["name"], "kind": "model", "label": entry["score"]["label"],
                                  "bits": model_byte_bits(model, window, rule, **draws)})
    for row in rows:
        row["panels"] += [{"name": name, "kind": "golfer", "label": "exact", "bits": golfer_byte_bits(name, row["text"])}
                          for name in golfers]
    return rows


def model_sample(entry: dict[str, Any], prompt: str, tokens: int, tokenizer: Path, **settings: Any) -> dict[str, Any]:
    """One generation of a model's row; a family without `generate` gets a row saying so."""
    row = {"name": entry["name"], "kind": "model", "prompt": prompt, **settings}
    try:
        s = generate_text(Path(entry["artifact"]), prompt, tokens=tokens, tokenizer=tokenizer, **settings)
    except GolfError as e:
        return {**row, "completion": f"(no sample: {e})", "new_tokens": 0}
    return {**row, "completion": s["completion"], "new_tokens": s["new_tokens"], "tokens_per_s": s["tokens_per_s"]}


def build_report(paths: list[Path], *, data: Path, tokenizer: Path, max_tokens: int | None = None,
                 prime_bytes: int = DEFAULT_PRIME_BYTES, docs: int = 2, doc_bytes: int = 400, prompt: str = "The",
                 gen_tokens: int = 32, temperature: float = 0.8, top_k: int | None = 50, seed: int = 0,
                 golfers: list[str] | None = None, progress: bool = False) -> dict[str, Any]:
    """Everything the page shows, as one JSON-able dict (rendered by golf.report_html.render)."""
    models = score_models(paths, data=data, tokenizer=tokenizer, max_tokens=max_tokens, progress=progress)
    seq_len = models[0]["score"]["seq_len"]  # golfers score the first model's val tokens
    golfer_report = score_golfers(data, tokenizer, seq_len=seq_len, max_tokens=max_tokens, prime_bytes=prime_bytes,
                                  names=golfers, progress=progress)
    golfer_list = [row["name"] for row in golfer_report["golfers"]]
    doc_rows = per_byte_docs(models, golfer_list, data=data, tokenizer=tokenizer, seq_len=seq_len, docs=docs,
                             doc_bytes=doc_bytes, progress=progress)
    samples = []
    if gen_tokens > 0:
        settings = {"temperature": temperature, "top_k": top_k, "seed": seed}
        samples = [model_sample(entry, prompt, gen_tokens, tokenizer, **settings) for entry in models]
        samples += [{"kind": "golfer", "new_tokens": gen_tokens, **s} for s in golfer_samples(
            data, tokenizer, prompt, gen_tokens, prime_bytes=prime_bytes, names=golfer_list, **settings)]
    return {"title": "golf report", "created": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "data": str(data),
            "tokenizer": str(tokenizer), "seq_len": seq_len, "max_tokens": max_tokens, "models": models,
            "golfers": golfer_report, "docs": doc_rows, "samples": samples}
