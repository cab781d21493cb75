"""Named sets of trainer settings: `PRESET=frontier` is the recipe the leaderboard's top records share.

A preset only fills in environment variables the user did not set, so any knob can still be
overridden (`PRESET=frontier NUM_LAYERS=9 ...`). The frontier values follow the top merged record
(2026-04-27, val_bpb 1.0611, its logged hyperparameters; shared reference frontier.md §1): 11 × 512,
MLP ×4, SP8192, LeakyReLU(0.5)², XSA, partial RoPE 16/64, layer-norm scaling, QK gain 5, parallel
residuals from layer 8, SmearGate (BOS-masked), layers 3–5 run three times from 35 % of training,
EMA 0.9965, MuonEq-R, Polar-Express Newton–Schulz, MIN_LR 0.1, weight decay, and GPTQ int6 matrices
with an int7 embedding, each row's step K times its RMS (K = 13 attention and MLP, 15
embedding; the record's MLP step is 12, which golf budget estimates 1.2 % over the cap, so the
preset takes 13: 0.9 % under), compressed by brotli; scored by phased document TTT (eval length 2048,
48-target chunks, rank-96 LoRA on queries, keys, values, the attention and MLP outputs and the
head, AdamW (0, 0.999) at LR 1e-4 with weight decay 1.0, in batches of 64 documents; three SGD
phases over the first 2000 documents at LR 0.001, ending after 666, 1333 and 2000 documents).
What golf does differently is stated in BENCHMARKS.md; for the evaluation: the record scales its
adapters' output by alpha/rank = 144/96 (golf: 1) and keeps each slot's A across documents
within a phase (golf resets A and B per document, so a document's score never depends on which
documents went before it); a looped layer gets one adapter per pass there, one shared here.
"""

from __future__ import annotations

from collections.abc import MutableMapping

from golf.errors import GolfError

PRESETS: dict[str, dict[str, str]] = {
    "frontier": {
        "VOCAB_SIZE": "8192", "NUM_LAYERS": "11", "MODEL_DIM": "512", "NUM_HEADS": "8", "NUM_KV_HEADS": "4",
        "MLP_MULT": "4", "MLP_LEAKY_SLOPE": "0.5", "XSA": "1", "ROPE_DIMS": "16", "LN_SCALE": "1",
        "QK_GAIN_INIT": "5.0", "PARALLEL_FROM": "8", "SMEAR_GATE": "1",
        "RECUR_START": "3", "RECUR_END": "6", "RECUR_LOOPS": "3", "RECUR_START_FRAC": "0.35",
        "EMA_DECAY": "0.9965", "MUON_ROW_NORM": "1", "MUON_POLAR_EXPRESS": "1", "MIN_LR": "0.1",
        "MUON_WEIGHT_DECAY": "0.095", "EMBED_WEIGHT_DECAY": "0.085", "MATRIX_LR": "0.026",
        "SCALAR_LR": "0.02", "TIED_EMBED_LR": "0.03", "MUON_MOMENTUM": "0.97",
        "MUON_MOMENTUM_WARMUP_START": "0.92", "MUON_MOMENTUM_WARMUP_STEPS": "1500", "GRAD_CLIP_NORM": "0.3",
        "TRAIN_SEQ_LEN": "2048", "TRAIN_BATCH_TOKENS": "786432", "WARMDOWN_FRAC": "0.72",
        "QUANT": "emb=int7s15,attn=int6s13,mlp=int6s13,gptq=1", "COMPRESSOR": "brotli-11",
        # The evaluation: phased document TTT (per-document LoRA; 3 SGD phases over the first 2000 documents).
        "EVAL_SEQ_LEN": "2048", "EVAL_STRIDE": "48", "TTT_ENABLED": "1", "TTT_MODE": "docs",
        "TTT_LORA_RANK": "96", "TTT_LORA_LR": "0.0001", "TTT_DOC_BATCH": "64",
        "TTT_LORA_TARGETS": "q,k,v,o,mlp", "TTT_LORA_BETA1": "0", "TTT_LORA_BETA2": "0.999", "TTT_LORA_WD": "1.0",
        "TTT_PREFIX_DOCS": "2000", "TTT_PHASES": "3", "TTT_LR": "0.001", "TTT_EPOCHS": "1",
    },
}


def preset_names() -> list[str]:
    return sorted(PRESETS)


def preset(name: str) -> dict[str, str]:
    if name not in PRESETS:
        raise GolfError(f"unknown preset {name!r}; known: {', '.join(preset_names())}")
    return dict(PRESETS[name])


def apply_preset(name: str, environ: MutableMapping[str, str]) -> dict[str, str]:
    """Fill `environ` with the preset's values where unset; returns what it filled in."""
    filled = {k: v for k, v in preset(name).items() if k not in environ}
    environ.update(filled)
    return filled
