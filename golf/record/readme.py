"""README.md of a record folder, generated from the same numbers as submission.json."""

from __future__ import annotations

from typing import Any

from golf.challenge import CAP_BYTES
from golf.record.ledger import FORMULA

# Knobs that name this machine's files or this run: the reproduce command sets them itself.
_LOCAL_ENV = ("DATA_PATH", "TOKENIZER_PATH", "RUN_ID", "RUN_DIR", "SEED")


def _fmt(x: float | None, digits: int = 8) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def reproduce_command(env: dict[str, str], world_size: int, embedded_data: bool) -> str:
    knobs = " ".join(f"{k}={v}" for k, v in env.items() if k not in _LOCAL_ENV)
    data = ("DATA_PATH=<golf>/golf/assets/fineweb10B_sp1024_sample TOKENIZER_PATH=<golf>/golf/assets/fineweb_1024_bpe.model"
            if embedded_data else "DATA_PATH=./data/datasets/fineweb10B_sp1024 "
                                  "TOKENIZER_PATH=./data/tokenizers/fineweb_1024_bpe.model")
    return f"SEED=<seed> {data} {knobs} \\\n  torchrun --standalone --nproc_per_node={world_size} train_gpt.py"


def render(sub: dict[str, Any], first: dict[str, Any], ledger: dict[str, Any], significance: dict[str, Any] | None,
           smoke: dict[str, Any], files: list[str], embedded_data: bool, modules: int) -> str:
    """`sub`: submission.json; `first`: the first run's result.json; `smoke`: the isolated run's report."""
    n = len(sub["seeds"])
    std = f" ± {sub['val_bpb_std']:.4f}" if sub["val_bpb_std"] is not None else ""
    lines = [
        f"# {sub['name']}", "",
        f"**val_bpb {sub['val_bpb']:.4f}{std}** ({n}-seed mean{', sample std' if std else ''}; label `{sub['label']}`) | "
        f"{sub['bytes_total']:,} bytes of {CAP_BYTES:,} | {sub['hardware']} | track `{sub['track']}`", "",
        sub["blurb"], "",
        "## Configuration", "",
        f"- model `{first['model']}`, {first['model_params']:,} parameters: "
        + ", ".join(f"{k}={v}" for k, v in first["model_config"].items()),
        f"- quantization `{first['quant']}`, compressor `{first['compressor']}`",
        f"- {first['world_size']} process(es), grad_accum_steps {first['grad_accum_steps']}, device {first['device']}, "
        f"torch {sub['pytorch_version']}",
        "- environment: " + " ".join(f"`{k}={v}`" for k, v in first.get("env", {}).items()), "",
        "## Results per seed", "",
        "| seed | val_loss (nats) | val_bpb | label | model bytes | steps | train time |",
        "|---|---|---|---|---|---|---|"]
    for seed in sub["seeds"]:
        r = sub["seed_results"][str(seed)]
        lines.append(f"| {seed} | {_fmt(r['val_loss'])} | {_fmt(r['val_bpb'])} | {r['label']} | "
                     f"{r['artifact_bytes']:,} | {r['steps']} | {r['train_time_ms'] / 1000:.1f} s |")
    lines += ["", f"Mean val_loss {_fmt(sub['val_loss'])} ± {_fmt(sub['val_loss_std'], 6)}, "
                  f"mean val_bpb {_fmt(sub['val_bpb'])} ± {_fmt(sub['val_bpb_std'], 6)} (sample std over seeds).", "",
              "## Size ledger", "", f"`{FORMULA}`", "",
              "| part | bytes |", "|---|---|",
              f"| train_gpt.py (self-contained: the trainer + {modules} golf/quant modules) "
              f"| {ledger['bytes_code']:,} |",
              f"| model artifact, max over seeds | {ledger['bytes_model_max']:,} |",
              f"| other files the code reads | {sum(ledger['bytes_other'].values()):,} |",
              f"| **total** | **{ledger['bytes_total']:,}** (headroom {ledger['headroom']:,}) |", "",
              "Every run logged exactly these code and model sizes (`Code size:` is the size of this "
              "train_gpt.py); `golf pack --check` recomputes the ledger from the files.", "",
              "## Significance", ""]
    if significance is None:
        lines.append("No baseline given, so no test against one: this is not a record claim.")
    else:
        p = "n/a" if significance["p_value"] is None else f"{significance['p_value']:.3g}"
        lines += [f"Improvement over the baseline: {significance['improvement_nats']:.5f} nats/token "
                  f"= {significance['improvement_bpb']:.5f} bpb (at {significance['bytes_per_token']:.4f} val bytes/token). "
                  f"Test: {significance['test']}; p = {p}. {significance['note']}.",
                  "", "nats ↔ bpb: val_bpb = val_loss / ln 2 × tokens / bytes of the val split."]
    lines += ["", "## Hardware", "", f"{sub['hardware']}; python {first['versions']['python']}, "
              f"torch {first['versions']['torch']}, golf {first['versions']['golf']}.", "",
              "## Reproduce", "",
              "train_gpt.py is self-contained (golf and quant are embedded, loaded from memory); install "
              "requirements.txt, then per seed:", "", "```",
              reproduce_command(first.get("env", {}), first["world_size"], embedded_data), "```", "",
              f"`golf pack` ran this file alone before writing the folder: an empty directory, `python -S` "
              f"(golf not importable), {smoke['steps']} CPU steps in {smoke['seconds']} s, reporting its own "
              f"size ({smoke['bytes_code']:,} bytes) and sources (sha256 {smoke['source_sha256'][:16]}…). "
              "`golf pack --unpack train_gpt.py DIR` extracts the embedded sources.", "",
              "## Files", ""] + [f"- `{name}`" for name in files] + [""]
    return "\n".join(lines)
