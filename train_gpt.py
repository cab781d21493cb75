"""
golf's train_gpt.py: the official parameter-golf baseline trainer, built on the golf toolkit.

Launch it the challenge's way; every knob is an environment variable with the official name and
default (plus a few golf additions, marked below):

    torchrun --standalone --nproc_per_node=8 train_gpt.py                       # 8×H100 record run
    DATA_PATH=embedded TOKENIZER_PATH=embedded MAX_WALLCLOCK_SECONDS=60 \\
        torchrun --standalone --nproc_per_node=2 train_gpt.py                   # CPU smoke run

Everything a run produces lands in RUN_DIR (default runs/<RUN_ID>): train.log (self-describing:
source hashes, versions, hardware), model.golf (the quantized, compressed artifact that counts
against the 16,000,000-byte cap), model_raw.golf (unquantized fp32 weights, for comparison) and
result.json (the final numbers, read by `golf pack`; never scrape the log).
`golf pack` turns this file and the golf/quant modules it imports into one self-contained script;
the code size logged below is that script's size, so the log's totals are what a record ships.
"""

from __future__ import annotations

import faulthandler
import hashlib
import json
import math
import os
import platform
import random
import resource
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

import golf
import golf.errors
import quant
from golf import clocks, embedded, models, presets, selfcontained
from golf.bpb import load_tokenizer, scoring_table
from golf.data import DistributedTokenLoader, TokenStream, find_shards, load_val_tokens
from golf.calibrate import collect_hessians
from golf.compile import compile_model, newton_schulz, resolve_compile
from golf.challenge import CAP_BYTES, TRAIN_SECONDS
from golf.ema import WeightEMA
from golf.evalplan import EvalPlan, headline, run_plan
from golf.launch import leave_worker
from golf.optim import Muon
from golf.precision import apply_dtype_policy, eval_autocast, resolve_precision, train_autocast
from golf.qat import enable_qat
from golf.score import ScoreResult, check_scorable, check_vocab, evaluate, model_from_artifact
from golf.sidecar import load_sidecar
from golf.sliding import sliding_windows
from golf.ttt import TTTConfig
from golf.warmup import warm_up_and_reset

# -----------------------------------------------------------------------------
# HYPERPARAMETERS
# -----------------------------------------------------------------------------
# Why environment variables: that is how the challenge, its records and every sweep tool drive
# the trainer (`SEED=1 RUN_ID=x torchrun ... train_gpt.py`), so golf keeps the official names
# and defaults. The model's shape is read by the chosen variant's config dataclass from the same
# environment (field model_dim ← MODEL_DIM), so a new family brings its own knobs without edits
# here. For MODEL=ar, the official baseline, they are (name, default):
#
#   VOCAB_SIZE 1024        NUM_LAYERS 9          MODEL_DIM 512          NUM_HEADS 8
#   NUM_KV_HEADS 4         MLP_MULT 2            TIE_EMBEDDINGS 1       TIED_EMBED_INIT_STD 0.005
#   LOGIT_SOFTCAP 30.0     ROPE_BASE 10000.0     QK_GAIN_INIT 1.5
#
# and the frontier options of the same model, off by default (golf/models/ar.py says what each does):
#
#   MLP_LEAKY_SLOPE 0.0    XSA 0                 ROPE_DIMS 0            LN_SCALE 0
#   PARALLEL_FROM -1       ATTN_GATE 0           SMEAR_GATE 0           BOS_ID 1
#   RECUR_START 0          RECUR_END 0           RECUR_LOOPS 1
#
# PRESET=frontier fills in every knob the top records set (golf/presets.py) where the environment
# leaves it unset.

PRESET = os.environ.get("PRESET", "")
PRESET_FILLED = presets.apply_preset(PRESET, os.environ) if PRESET else {}


ENV_SET: dict[str, str] = {}  # the knobs this run set: result.json keeps them, to reproduce it


def _env(name: str, default, kind=str):
    raw = os.environ.get(name)
    if raw is None:
        return default
    ENV_SET[name] = raw
    try:
        return kind(raw)
    except ValueError:
        raise SystemExit(f"train_gpt.py: {name}={raw!r} is not a valid {kind.__name__}") from None


class Hyperparameters:
    # Data and run.
    data_path = _env("DATA_PATH", "./data/datasets/fineweb10B_sp1024")
    tokenizer_path = _env("TOKENIZER_PATH", "./data/tokenizers/fineweb_1024_bpe.model")
    run_id = _env("RUN_ID", str(uuid.uuid4()))
    seed = _env("SEED", 1337, int)

    # Validation and logging.
    val_batch_size = _env("VAL_BATCH_SIZE", 524_288, int)
    val_loss_every = _env("VAL_LOSS_EVERY", 1000, int)
    train_log_every = _env("TRAIN_LOG_EVERY", 200, int)

    # Length of training.
    iterations = _env("ITERATIONS", 20_000, int)
    warmdown_iters = _env("WARMDOWN_ITERS", 1200, int)
    warmup_steps = _env("WARMUP_STEPS", 20, int)
    train_batch_tokens = _env("TRAIN_BATCH_TOKENS", 524_288, int)
    train_seq_len = _env("TRAIN_SEQ_LEN", 1024, int)
    max_wallclock_seconds = _env("MAX_WALLCLOCK_SECONDS", TRAIN_SECONDS, float)

    # Optimizers.
    embed_lr = _env("EMBED_LR", 0.6, float)
    head_lr = _env("HEAD_LR", 0.008, float)
    tied_embed_lr = _env("TIED_EMBED_LR", 0.05, float)
    matrix_lr = _env("MATRIX_LR", 0.04, float)
    scalar_lr = _env("SCALAR_LR", 0.04, float)
    muon_momentum = _env("MUON_MOMENTUM", 0.95, float)
    muon_backend_steps = _env("MUON_BACKEND_STEPS", 5, int)
    muon_momentum_warmup_start = _env("MUON_MOMENTUM_WARMUP_START", 0.85, float)
    muon_momentum_warmup_steps = _env("MUON_MOMENTUM_WARMUP_STEPS", 500, int)
    beta1 = _env("BETA1", 0.9, float)
    beta2 = _env("BETA2", 0.95, float)
    adam_eps = _env("ADAM_EPS", 1e-8, float)
    grad_clip_norm = _env("GRAD_CLIP_NORM", 0.0, float)

    # golf additions (defaults reproduce the official behaviour where one exists).
    model = _env("MODEL", "ar")                      # variant name: ar, mdlm, ...
    run_dir = _env("RUN_DIR", "")                    # default runs/<RUN_ID>
    warmdown_frac = _env("WARMDOWN_FRAC", 0.0, float)  # >0: warm down over this share of the run
    val_max_tokens = _env("VAL_MAX_TOKENS", 0, int)  # 0 = the whole val split
    grad_accum_steps = _env("GRAD_ACCUM_STEPS", 0, int)  # 0 = 8 // WORLD_SIZE, as official
    quant_rule = _env("QUANT", "int8")               # per-tensor quantization rule (golf inspect/budget)
    compressor = _env("COMPRESSOR", "zstd-22")       # artifact compressor (official: zlib-9); auto = smallest
    qat_start_frac = _env("QAT_START_FRAC", 0.0, float)  # >0: fake-quantize intN weights from this share of the run on
    gptq_calib_tokens = _env("GPTQ_CALIB_TOKENS", 131_072, int)  # train tokens for GPTQ Hessians (rule gptq=1)
    gptq_reserve_seconds = _env("GPTQ_RESERVE_SECONDS", 12.0, float)  # gptq=1: stop early, calibrate in the cap
    eval_seed = _env("EVAL_SEED", seed, int)         # seeds a Monte Carlo (bound) score's draws
    eval_samples = _env("EVAL_SAMPLES", 1, int)      # Monte Carlo estimates per val window (bound scores)
    device = _env("DEVICE", "auto")                  # auto | cuda | cpu
    autocast = _env("AUTOCAST", "auto")              # training matmul dtype: auto | bf16 | off
    compile = _env("COMPILE", "auto")                # torch.compile + warm-up: auto (CUDA only) | 1 | 0
    precision = _env("PRECISION", "auto")            # dtype policy: auto | gpu (official bf16) | cpu (fp32)

    # Frontier training options (golf additions; off by default = the baseline).
    ema_decay = _env("EMA_DECAY", 0.0, float)        # >0: score and ship an EMA of the weights
    min_lr = _env("MIN_LR", 0.0, float)              # floor of the LR multiplier during warmdown
    muon_row_norm = _env("MUON_ROW_NORM", 0, int)    # 1: MuonEq-R, rows equalised before Newton–Schulz
    muon_polar_express = _env("MUON_POLAR_EXPRESS", 0, int)  # 1: Polar-Express Newton–Schulz steps
    muon_weight_decay = _env("MUON_WEIGHT_DECAY", 0.0, float)  # decoupled, × the scheduled LR (tapers)
    embed_weight_decay = _env("EMBED_WEIGHT_DECAY", 0.0, float)  # AdamW on the embedding and head
    recur_start_frac = _env("RECUR_START_FRAC", 0.0, float)  # depth recurrence switched on from here

    # Final evaluation (golf additions; defaults = the baseline's non-overlapping windows, no TTT).
    eval_seq_len = _env("EVAL_SEQ_LEN", train_seq_len, int)  # final eval window length L
    eval_stride = _env("EVAL_STRIDE", eval_seq_len, int)     # < L: sliding windows, each scoring its last S
    ttt_enabled = _env("TTT_ENABLED", 0, int)                # 1: score-first test-time training (golf.ttt)
    ttt_chunk_tokens = _env("TTT_CHUNK_TOKENS", 32_768, int)
    ttt_epochs = _env("TTT_EPOCHS", 3, int)
    ttt_lr = _env("TTT_LR", 0.002, float)
    ttt_momentum = _env("TTT_MOMENTUM", 0.9, float)
    ttt_batch_seqs = _env("TTT_BATCH_SEQS", 32, int)
    ttt_grad_clip = _env("TTT_GRAD_CLIP", 1.0, float)
    ttt_mode = _env("TTT_MODE", "stream", str)              # docs: each document alone (golf.doc_ttt)
    ttt_doc_batch = _env("TTT_DOC_BATCH", 64, int)          # docs: documents side by side, own adapters each
    ttt_lora_rank = _env("TTT_LORA_RANK", 8, int)           # docs: per-document LoRA rank, reset per document
    ttt_lora_lr = _env("TTT_LORA_LR", 0.01, float)
    ttt_lora_targets = _env("TTT_LORA_TARGETS", "q,v", str)  # docs: adapted besides the head: q,k,v,o,mlp
    ttt_lora_beta1 = _env("TTT_LORA_BETA1", 0.9, float)      # docs: the adapters' AdamW betas, weight decay
    ttt_lora_beta2 = _env("TTT_LORA_BETA2", 0.95, float)
    ttt_lora_wd = _env("TTT_LORA_WD", 0.0, float)
    ttt_prefix_docs = _env("TTT_PREFIX_DOCS", 0, int)       # docs: global SGD phases over the first N documents
    ttt_phases = _env("TTT_PHASES", 1, int)


# -----------------------------------------------------------------------------
# INPUT VALIDATION
# -----------------------------------------------------------------------------
# Why check every knob before anything starts: a bad value should cost one line, not a run that
# never stops, trains nothing, diverges from a NaN in its config or writes over another run.
# Sizes must be positive, rates finite and in range, and the run needs a way to stop. The model's
# shape (heads dividing the width, even head dims, finite gains) is checked by its config class.

_POSITIVE = ("train_batch_tokens", "train_seq_len", "val_batch_size", "muon_backend_steps", "eval_samples")
_NON_NEGATIVE = ("warmup_steps", "warmdown_iters", "val_loss_every", "train_log_every", "val_max_tokens",
                 "grad_accum_steps", "gptq_calib_tokens", "muon_momentum_warmup_steps",
                 "embed_lr", "head_lr", "tied_embed_lr", "matrix_lr", "scalar_lr", "grad_clip_norm",
                 "muon_weight_decay", "embed_weight_decay")
_FRACTIONS = ("muon_momentum", "muon_momentum_warmup_start", "warmdown_frac", "qat_start_frac", "min_lr",
              "recur_start_frac")  # in [0, 1]
_DECAYS = ("beta1", "beta2", "ema_decay")  # in [0, 1): at 1 nothing would ever be learned or averaged


def validate_hyperparameters(args: Hyperparameters) -> None:
    """Every problem with the run's settings, as one line; nothing has been created yet."""
    floats = [name for name, default in vars(Hyperparameters).items() if isinstance(default, float)]
    problems = [f"{n.upper()}={getattr(args, n)} is not finite" for n in floats if not math.isfinite(getattr(args, n))]
    problems += [f"{n.upper()}={getattr(args, n)} must be >= 1" for n in _POSITIVE if getattr(args, n) < 1]
    problems += [f"{n.upper()}={getattr(args, n)} must be >= 0" for n in _NON_NEGATIVE if getattr(args, n) < 0]
    problems += [f"{n.upper()}={getattr(args, n)} must be in [0, 1]" for n in _FRACTIONS
                 if not 0 <= getattr(args, n) <= 1]
    problems += [f"{n.upper()}={getattr(args, n)} must be in [0, 1)" for n in _DECAYS if not 0 <= getattr(args, n) < 1]
    if not args.adam_eps > 0:
        problems.append(f"ADAM_EPS={args.adam_eps} must be > 0")
    if args.iterations < 0 and not args.max_wallclock_seconds > 0:
        problems.append(f"ITERATIONS={args.iterations} with no MAX_WALLCLOCK_SECONDS cap: the run would never stop")
    if problems:
        raise golf.errors.GolfError("; ".join(problems))
    models.config_from_env(args.model, os.environ)  # the model's own checks, before any weight exists


# -----------------------------------------------------------------------------
# DISTRIBUTED SETUP AND LOGGING
# -----------------------------------------------------------------------------
# Why torchrun and nothing else: RANK/WORLD_SIZE/LOCAL_RANK from torchrun are the whole
# contract, so one node or many is only a matter of torchrun flags. NCCL on GPU, gloo on CPU.
# Only rank 0 writes the log; it starts with everything needed to review the run later.


class Runtime:
    def __init__(self, args: Hyperparameters) -> None:
        self.distributed = "RANK" in os.environ and "WORLD_SIZE" in os.environ
        self.rank = int(os.environ.get("RANK", 0))
        self.world_size = int(os.environ.get("WORLD_SIZE", 1))
        self.local_rank = int(os.environ.get("LOCAL_RANK", 0))
        use_cuda = {"auto": torch.cuda.is_available(), "cuda": True, "cpu": False}.get(args.device)
        if use_cuda is None:
            raise SystemExit(f"train_gpt.py: DEVICE must be auto, cuda or cpu, not {args.device!r}")
        if use_cuda and not torch.cuda.is_available():
            raise SystemExit("train_gpt.py: DEVICE=cuda but CUDA is not available")
        self.device = torch.device("cuda", self.local_rank) if use_cuda else torch.device("cpu")
        if use_cuda:
            torch.cuda.set_device(self.device)
        if self.distributed:
            if use_cuda:
                dist.init_process_group(backend="nccl", device_id=self.device)
            else:
                dist.init_process_group(backend="gloo")
            dist.barrier()
        self.is_main = self.rank == 0
        self.run_dir = Path(args.run_dir or f"runs/{args.run_id}")
        self.log_path = self.run_dir / "train.log"
        self.metrics_path = self.run_dir / "metrics.jsonl"
        # Never write into a folder that holds anything: a finished or running run, a record, or
        # files of any kind may be what someone ships. Rank 0 looks (other nodes may not share its
        # disk) and every rank learns the answer.
        if self.any_true(self.is_main and self.run_dir.exists()
                         and (not self.run_dir.is_dir() or any(self.run_dir.iterdir()))):
            raise SystemExit(f"train_gpt.py: {self.run_dir} is not empty (it already holds a run or other "
                             "files); set another RUN_ID or RUN_DIR, or empty it")
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.log_path.write_text("")
            self.metrics_path.write_text("")

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def log0(self, msg: str, console: bool = True) -> None:
        if not self.is_main:
            return
        if console:
            print(msg, flush=True)
        with self.log_path.open("a", encoding="utf-8") as f:
            f.write(msg + "\n")

    def metric(self, **fields) -> None:
        """One JSON object per logged step or validation in metrics.jsonl: the curves, machine-read
        (train.log keeps the official lines for people and record checkers)."""
        if self.is_main:
            # A diverged number is written as null: JSON has no NaN, and the log line keeps the text.
            clean = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in fields.items()}
            with self.metrics_path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(clean, sort_keys=True, allow_nan=False) + "\n")

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def all_true(self, flag: bool) -> bool:
        """True only if `flag` holds on every rank (so all ranks take the same branch)."""
        if not self.distributed:
            return flag
        t = torch.tensor(int(flag), device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return bool(t.item())

    def any_true(self, flag: bool) -> bool:
        return not self.all_true(not flag)

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def close(self) -> None:
        if self.distributed:
            # No rank tears gloo down while a peer still holds a connection to it: a rank that
            # destroyed its group while rank 0 was still writing result.json died of SIGABRT at exit.
            dist.barrier()
            dist.destroy_process_group()


def log_environment(rt: Runtime, args: Hyperparameters, code: selfcontained.RunningCode) -> None:
    # The digest covers exactly what the packed train_gpt.py embeds: `golf pack` compares it
    # with the sources it ships, so a record cannot claim a run made with other code.
    rt.log0(f"run_id:{args.run_id} run_dir:{rt.run_dir}")
    rt.log0(f"source_sha256:{code.sources.sha256()} files:{len(code.sources.files())} "
            f"packed:{int(code.packed)}")
    for name, text in code.sources.files().items():
        rt.log0(f"source {hashlib.sha256(text.encode()).hexdigest()[:16]} {name}", console=False)
    rt.log0(f"versions python:{platform.python_version()} torch:{torch.__version__} golf:{golf.__version__} "
            f"numpy:{np.__version__}")
    if rt.cuda:
        smi = subprocess.run(["nvidia-smi"], capture_output=True, text=True, check=False).stdout
        rt.log0(f"hardware gpus:{torch.cuda.device_count()} name:{torch.cuda.get_device_name(rt.device)}")
        rt.log0(smi, console=False)
    else:
        rt.log0(f"hardware cpu:{platform.processor() or platform.machine()} cores:{os.cpu_count()} "
                f"torch_threads:{torch.get_num_threads()} world_size:{rt.world_size}")


# -----------------------------------------------------------------------------
# TOKENIZER-AGNOSTIC EVALUATION SETUP
# -----------------------------------------------------------------------------
# Why bits per byte: val_loss in nats per token depends on the tokenizer, bytes do not. Each
# scored token is credited the UTF-8 bytes it decodes to, from the tokenizer's byte table
# (golf.bpb: for the challenge tokenizers exactly the official rule, where a '▁' counts one byte
# except right after a boundary token; where the official rule would miscount, both totals are
# logged). Val tokens whose bytes are unknown (<unk>) are refused before training starts.
# A model whose score is only an upper bound (an ELBO) says so with the label `bound`.


def resolve_data(args: Hyperparameters) -> tuple[Path, Path]:
    """DATA_PATH/TOKENIZER_PATH, where the word `embedded` means golf's shipped FineWeb sample."""
    data = embedded.shards_dir() if args.data_path == "embedded" else Path(args.data_path)
    tok = embedded.tokenizer_path() if args.tokenizer_path == "embedded" else Path(args.tokenizer_path)
    if not data.exists():
        raise SystemExit(f"train_gpt.py: DATA_PATH {data} does not exist; download shards with "
                         "`golf data fetch --variant sp1024 --train-shards N` or use DATA_PATH=embedded")
    return data, tok


# -----------------------------------------------------------------------------
# MODEL AND OPTIMIZERS
# -----------------------------------------------------------------------------
# Why Muon + Adam: the official split. Muon orthogonalises the momentum of every 2-D block
# matrix; Adam handles the embedding (its own LR, higher when untied), an untied head and the
# small control tensors. No weight decay anywhere, as in the baseline. Under PRECISION=gpu (the
# default on GPU, and possible anywhere so CPU tests run its casts) the model is bf16 with its
# linear weights and control tensors in fp32, as official (golf.precision).


def build_model(args: Hyperparameters, rt: Runtime, precision: str) -> tuple[models.LanguageModel, dict[str, str]]:
    """The variant and its tensor roles (checked: every saved tensor has one), which decide the
    optimizer split, the quantization groups and, under PRECISION=gpu, which tensors stay fp32."""
    config = models.config_from_env(args.model, os.environ)
    model = models.build(args.model, config).to(rt.device)
    roles = model.checked_roles()
    return apply_dtype_policy(model, roles, precision), roles


def embed_lr(args: Hyperparameters, model: models.LanguageModel) -> float:
    """TIED_EMBED_LR when the embedding is also the head (the baseline, and any family without a
    TIE_EMBEDDINGS knob), EMBED_LR when an untied head has its own."""
    return args.tied_embed_lr if getattr(model.config, "tie_embeddings", True) else args.embed_lr


def build_optimizers(args: Hyperparameters, model: models.LanguageModel, rt: Runtime,
                     train_dtype: torch.dtype | None, compiled: bool) -> list:
    groups = model.param_groups()
    adam_kw = dict(betas=(args.beta1, args.beta2), eps=args.adam_eps, fused=rt.cuda)

    def adam(params, lr: float, weight_decay: float = 0.0):
        # AdamW's decay is decoupled and scaled by the scheduled LR; with none it is plain Adam.
        kind = torch.optim.AdamW if weight_decay > 0 else torch.optim.Adam
        return kind([{"params": params, "lr": lr, "base_lr": lr}], weight_decay=weight_decay, **adam_kw)

    optimizers = [adam(groups["embed"], embed_lr(args, model), args.embed_weight_decay)]
    muon = Muon(groups["matrix"], lr=args.matrix_lr, momentum=args.muon_momentum,
                backend_steps=args.muon_backend_steps,
                ns_dtype=train_dtype or torch.float32,
                orthogonalize=newton_schulz(compiled),
                row_norm=bool(args.muon_row_norm), polar_express=bool(args.muon_polar_express),
                weight_decay=args.muon_weight_decay)
    for group in muon.param_groups:
        group["base_lr"] = args.matrix_lr
    optimizers += [muon, adam(groups["scalar"], args.scalar_lr)]
    if groups["head"]:
        optimizers.append(adam(groups["head"], args.head_lr, args.embed_weight_decay))
    return [opt for opt in optimizers if any(g["params"] for g in opt.param_groups)]


# -----------------------------------------------------------------------------
# LEARNING-RATE SCHEDULE
# -----------------------------------------------------------------------------
# Why constant-then-linear-warmdown: the baseline's schedule. Under a wallclock cap the
# warmdown is measured in time (WARMDOWN_ITERS × the mean step time so far), so the LR reaches
# zero when the cap does however fast the hardware is. WARMDOWN_FRAC, a golf addition, sets
# the warmdown as a share of the run instead, and MIN_LR floors it (the top records stop at 0.1).
# With a GPTQ rule the loop's cap is the wallclock cap less GPTQ_RESERVE_SECONDS (golf.clocks),
# and the schedule ends there.


def run_progress(args: Hyperparameters, step: int, elapsed_ms: float, reserve_s: float = 0.0) -> float:
    """How far through the run we are, 0..1: by steps or by wallclock, whichever is further."""
    by_steps = step / args.iterations if args.iterations > 0 else 0.0
    cap_ms = clocks.training_cap_ms(args.max_wallclock_seconds, reserve_s)
    by_time = elapsed_ms / max(cap_ms, 1e-9) if cap_ms is not None else 0.0
    return max(by_steps, by_time)


def lr_multiplier(args: Hyperparameters, step: int, elapsed_ms: float, reserve_s: float = 0.0) -> float:
    return max(warmdown_multiplier(args, step, elapsed_ms, reserve_s), args.min_lr)


def warmdown_multiplier(args: Hyperparameters, step: int, elapsed_ms: float, reserve_s: float = 0.0) -> float:
    """The LR scale; under a wallclock cap it reaches 0 where training stops (the cap less the GPTQ reserve)."""
    cap_ms = clocks.training_cap_ms(args.max_wallclock_seconds, reserve_s)
    if cap_ms is None:
        warmdown = (args.warmdown_frac * args.iterations if args.warmdown_frac > 0
                    else args.warmdown_iters)
        if warmdown <= 0:
            return 1.0
        start = max(args.iterations - warmdown, 0)
        return max((args.iterations - step) / warmdown, 0.0) if start <= step < args.iterations else 1.0
    if args.warmdown_frac > 0:
        warmdown_ms = args.warmdown_frac * cap_ms
    elif args.warmdown_iters > 0:
        warmdown_ms = args.warmdown_iters * elapsed_ms / max(step, 1)
    else:
        return 1.0
    remaining_ms = max(cap_ms - elapsed_ms, 0.0)
    return remaining_ms / max(warmdown_ms, 1e-9) if remaining_ms <= warmdown_ms else 1.0


# -----------------------------------------------------------------------------
# POST-TRAINING QUANTIZATION AND THE ARTIFACT
# -----------------------------------------------------------------------------
# Why quantize then reload: the score that counts is the one of the bytes that ship. The
# weights are quantized by QUANT's per-tensor rule (default: the official int8 per-row scheme
# with small tensors kept in float), compressed into one artifact (a JSON manifest + payload
# with a checksum; never a pickle), read back from disk and scored from the bytes alone.
# The rules as practised (golf.clocks): GPTQ calibration reads training data, so it runs on
# the training clock, inside the cap; the eval clock starts at the artifact read and covers
# decompression, the rebuild and every score. The final evaluation is EVAL_SEQ_LEN/EVAL_STRIDE
# windows with optional score-first TTT (golf.evalplan), recorded in the artifact so `golf
# score` reproduces it; the log ends with the lines records prove compliance with.


def artifact_meta(args: Hyperparameters, model: models.LanguageModel, tok_path: Path,
                  tok_sha: str, vocab: int, plan: EvalPlan, batch_windows: int) -> dict:
    # Everything `golf score` needs to rebuild the model and reproduce the trainer's final score.
    return {"model": {"variant": model.variant, "config": model.config_dict()},
            "tokenizer": {"name": tok_path.name, "sha256": tok_sha, "vocab_size": vocab},
            "eval": {**plan.meta(), "seed": args.eval_seed, "samples": args.eval_samples,
                     "batch_windows": batch_windows},
            "run": {"run_id": args.run_id, "seed": args.seed, "preset": PRESET or None,
                    "training": training_options(args)},
            "golf_version": golf.__version__}


def training_options(args: Hyperparameters) -> dict:
    """The trainer's frontier options as this run set them: the artifact keeps them (golf inspect)."""
    return {"ema_decay": args.ema_decay, "min_lr": args.min_lr, "muon_row_norm": args.muon_row_norm,
            "muon_polar_express": args.muon_polar_express, "muon_weight_decay": args.muon_weight_decay,
            "embed_weight_decay": args.embed_weight_decay, "recur_start_frac": args.recur_start_frac,
            "qat_start_frac": args.qat_start_frac, "warmdown_frac": args.warmdown_frac}


def calibrate(args: Hyperparameters, rt: Runtime, model: models.LanguageModel, loader: DistributedTokenLoader,
              grad_accum: int, dtype: torch.dtype | None) -> tuple[dict[str, torch.Tensor], float]:
    # GPTQ's Hessians from the start of the *train* stream (never val), right after the training
    # loop stopped GPTQ_RESERVE_SECONDS early: they must be collected inside the training clock.
    batches = max(1, args.gptq_calib_tokens // args.train_batch_tokens * grad_accum)
    stream = (loader.next_batch(args.train_batch_tokens, args.train_seq_len, grad_accum) for _ in range(batches))
    hessians, seconds = collect_hessians(model, stream, device=rt.device, autocast_dtype=dtype)
    rt.log0(f"gptq:calibration layers:{len(hessians)} tokens:{batches * args.train_batch_tokens // grad_accum} "
            f"time:{1000 * seconds:.0f}ms")
    return hessians, seconds


def _tag(text: str) -> str:
    """A log-key-safe rule or compressor name: 'zstd-22' → 'zstd22', 'emb=int4g32,...' → 'emb_int4g32_...'."""
    return "".join(c if c.isalnum() else "_" for c in text.replace("-", "")).strip("_")


# -----------------------------------------------------------------------------
# TRAINING
# -----------------------------------------------------------------------------
# Why this loop: it is the baseline's. Gradient accumulation keeps the global batch fixed
# whatever the world size; DDP syncs gradients on the last micro-step only; train time pauses
# during validation; once the wallclock cap (less any GPTQ reserve) is reached on any rank, all
# ranks stop after the same step. A non-finite train loss, final val score or artifact score stops
# the run (exit 1, no result.json) and saves the last weights that gave a finite loss as
# model_lastgood.golf.


def main() -> None:
    args = Hyperparameters()
    validate_hyperparameters(args)
    rt = Runtime(args)
    precision = resolve_precision(args.precision, rt.device)
    compiled = resolve_compile(args.compile, rt.device)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    data_path, tok_path = resolve_data(args)
    rule = quant.parse_rule(args.quant_rule)  # a bad QUANT or COMPRESSOR fails now, not after training
    reserve_s = args.gptq_reserve_seconds if rule.gptq else 0.0  # the training loop's share of the cap goes to GPTQ
    plan = eval_plan(args)  # so does a bad EVAL_* or TTT_* knob
    if args.compressor != quant.AUTO:
        quant.get_compressor(args.compressor)
    grad_accum = args.grad_accum_steps or max(1, 8 // rt.world_size)
    if not args.grad_accum_steps and 8 % rt.world_size and rt.world_size < 8:
        raise SystemExit(f"train_gpt.py: WORLD_SIZE={rt.world_size} must divide 8, or set GRAD_ACCUM_STEPS")

    # Tokenizer, byte table and data.
    sp = load_tokenizer(tok_path)
    tok_sha = embedded.file_sha256(tok_path)
    model, roles = build_model(args, rt, precision)
    rule.check_roles(roles)  # a rule group naming no tensor of this model (a typo) fails now too
    # The tokenizer's ids are the data's; any further model ids are reserved (never data, 0 bytes).
    vocab = sp.vocab_size()
    check_vocab(model, vocab)
    train_files = find_shards(data_path, "train")
    # A family may fit part of itself to the data before step 0 (MODEL=bits CODE=cooc builds its bit
    # code from training co-occurrences): from the start of the train stream, the same on every
    # rank, never from val. It runs before the clock starts; its time is logged so a record can count it.
    fitted = model.fit_to_train(lambda n: TokenStream(train_files, vocab).take(n))
    val_files = find_shards(data_path, "val")
    # Not truncated here: each evaluation cuts the stream to whole windows of its own length.
    val_tokens = load_val_tokens(val_files, 1, max_tokens=args.val_max_tokens or None, vocab_size=vocab)
    table, rule_difference = scoring_table(sp, val_tokens, model.vocab_size)  # refuses <unk> before training
    sidecar = load_sidecar(val_files, val_tokens.numel())  # per-token bytes, where the shards carry them
    windows = sliding_windows(val_tokens, args.train_seq_len, sidecar=sidecar)
    val_batch_windows = max(1, args.val_batch_size // (rt.world_size * grad_accum) // args.train_seq_len)
    plan_batch_windows = max(1, args.val_batch_size // (rt.world_size * grad_accum) // plan.length)
    eval_dtype = eval_autocast(precision)
    meta = artifact_meta(args, model, tok_path, tok_sha, vocab, plan, plan_batch_windows)
    # A score that cannot run as configured (EVAL_SAMPLES too small for a bound) fails now, not after training.
    check_scorable(model, windows, device=rt.device, seed=args.eval_seed, samples=args.eval_samples)
    train_dtype = train_autocast(args.autocast, precision)

    code = selfcontained.running_code(Path(__file__))
    log_environment(rt, args, code)
    rt.log0(f"val_bpb:enabled tokenizer_kind=sentencepiece tokenizer_path={tok_path} sha256:{tok_sha[:16]}")
    rt.log0(f"train_loader:dataset:{data_path} train_shards:{len(train_files)}")
    rt.log0(f"val_loader:tokens:{val_tokens.numel()} windows:{len(windows)} "
            f"bytes:{'sidecar' if sidecar is not None else 'table'}")
    if rule_difference:
        rt.log0(rule_difference.note())
    if fitted:
        rt.log0(f"fit_to_train {json.dumps(fitted, sort_keys=True)}")
    rt.log0(f"model:{args.model} model_params:{sum(p.numel() for p in model.parameters())} "
            f"config:{json.dumps(model.config_dict(), sort_keys=True)}")
    rt.log0(f"world_size:{rt.world_size} grad_accum_steps:{grad_accum} device:{rt.device} "
            f"precision:{precision} train_autocast:{train_dtype} eval_autocast:{eval_dtype} compile:{int(compiled)}")
    rt.log0(f"train_batch_tokens:{args.train_batch_tokens} train_seq_len:{args.train_seq_len} "
            f"iterations:{args.iterations} warmup_steps:{args.warmup_steps} "
            f"max_wallclock_seconds:{args.max_wallclock_seconds:.3f} warmdown_iters:{args.warmdown_iters} "
            f"warmdown_frac:{args.warmdown_frac}")
    rt.log0(f"quant:{rule.spec} compressor:{args.compressor} qat_start_frac:{args.qat_start_frac}")
    rt.log0(f"preset:{PRESET or 'none'} filled:{','.join(sorted(PRESET_FILLED)) or '-'} ema_decay:{args.ema_decay} "
            f"min_lr:{args.min_lr} muon_row_norm:{args.muon_row_norm} muon_polar_express:{args.muon_polar_express} "
            f"muon_weight_decay:{args.muon_weight_decay} embed_weight_decay:{args.embed_weight_decay} "
            f"recur_start_frac:{args.recur_start_frac}")
    rt.log0(f"final_eval:{plan.name} {plan.describe()}")
    rt.log0(f"embed_lr:{embed_lr(args, model)} "
            f"head_lr:{args.head_lr} matrix_lr:{args.matrix_lr} scalar_lr:{args.scalar_lr} seed:{args.seed}")

    # Compile and wrap: the same code on every device (COMPILE=auto compiles on CUDA only). A
    # compiled run primes its graphs on WARMUP_STEPS real steps below, which are then undone.
    trained_model = compile_model(model) if compiled else model
    if rt.distributed:
        trained_model = DDP(trained_model, device_ids=[rt.local_rank] if rt.cuda else None,
                            broadcast_buffers=False)
    optimizers = build_optimizers(args, model, rt, train_dtype, compiled)
    muon = next(opt for opt in optimizers if isinstance(opt, Muon))
    # One random stream per rank from here on (the weights are initialised, identically): a family
    # that draws training noise (MDLM's masks) must not draw the same noise on every rank.
    torch.manual_seed(args.seed + rt.rank)

    def make_loader() -> DistributedTokenLoader:
        return DistributedTokenLoader(train_files, rt.rank, rt.world_size, vocab_size=vocab)

    def run_micro_steps(loader: DistributedTokenLoader) -> torch.Tensor:
        train_loss = torch.zeros((), device=rt.device)
        for micro in range(grad_accum):
            if rt.distributed:
                trained_model.require_backward_grad_sync = micro == grad_accum - 1
            batch = loader.next_batch(args.train_batch_tokens, args.train_seq_len, grad_accum)
            batch = batch.to(rt.device, non_blocking=True)
            with torch.autocast(rt.device.type, dtype=train_dtype or torch.bfloat16, enabled=train_dtype is not None):
                loss = trained_model(batch)
            train_loss += loss.detach()
            (loss / grad_accum).backward()
        return train_loss / grad_accum

    def zero_grad() -> None:
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)

    loader = make_loader()
    if compiled and args.warmup_steps > 0:
        # Prime torch.compile on real train steps, then restore the true initial state (weights,
        # optimizer state, RNG) and restart the loader: the timed run starts as an uncompiled one.
        def warmup_step() -> None:
            run_micro_steps(loader)
            for opt in optimizers:
                opt.step()
            zero_grad()
            rt.sync()

        def log_warmup(step: int, ms: float) -> None:
            rt.log0(f"warmup_step:{step}/{args.warmup_steps} time:{ms:.0f}ms")
            rt.metric(kind="warmup", step=step, time_ms=round(ms))

        warmup_ms = warm_up_and_reset(model, optimizers, args.warmup_steps, warmup_step, log_warmup)
        rt.log0(f"warmup:done steps:{args.warmup_steps} time:{warmup_ms:.0f}ms (not counted as train time)")
        loader = make_loader()

    def validate(scored_model: models.LanguageModel):
        return evaluate(scored_model, windows, table, batch_windows=val_batch_windows, device=rt.device,
                        rank=rt.rank, world_size=rt.world_size, autocast_dtype=eval_dtype,
                        seed=args.eval_seed, samples=args.eval_samples)

    ema = WeightEMA(model, args.ema_decay) if args.ema_decay > 0 else None
    recurrence_pending = args.recur_start_frac > 0
    if recurrence_pending:  # depth recurrence waits for its share of the run (no parameters change)
        if not hasattr(model, "recurrence_on"):
            raise SystemExit(f"train_gpt.py: RECUR_START_FRAC is set but model {args.model!r} has no depth recurrence")
        model.recurrence_on = False
    cap_ms = clocks.training_cap_ms(args.max_wallclock_seconds, reserve_s)
    if rule.gptq and cap_ms is not None:
        rt.log0(clocks.reserve_line(reserve_s, cap_ms))
    training_ms, stop_after, step, qat_on = 0.0, None, 0, False
    last_good = LastGoodWeights(model)

    def stop_if_non_finite(value: float, what: str,
                           advice: str = "Lower the learning rates or set GRAD_CLIP_NORM.") -> None:
        if not rt.all_true(math.isfinite(value)):
            stop_on_non_finite(rt, model, last_good, f"{what} ({value})", advice, meta)

    val_loss = val_bpb = float("nan")
    rt.sync()
    t0 = time.perf_counter()
    while True:
        last_step = step == args.iterations or (stop_after is not None and step >= stop_after)
        if last_step or (args.val_loss_every > 0 and step % args.val_loss_every == 0):
            rt.sync()
            training_ms += 1000.0 * (time.perf_counter() - t0)
            if last_step and ema is not None:  # from here on the averaged weights are the model
                ema.copy_to(model)
                rt.log0(f"ema:applied decay:{args.ema_decay} step:{step}")
            val = validate(model)
            val_loss, val_bpb = val.val_loss, val.val_bpb
            rt.log0(f"step:{step}/{args.iterations} val_loss:{val_loss:.4f} val_bpb:{val_bpb:.4f} "
                    f"train_time:{training_ms:.0f}ms step_avg:{training_ms / max(step, 1):.2f}ms")
            rt.metric(kind="val", step=step, val_loss=val_loss, val_bpb=val_bpb, label=val.label,
                      val_bpb_stderr=val.bpb_stderr, train_time_ms=round(training_ms),
                      tokens_seen=step * args.train_batch_tokens)
            rt.sync()
            t0 = time.perf_counter()
        if last_step:
            if stop_after is not None and step < args.iterations:
                rt.log0(f"stopping_early: wallclock_cap train_time:{training_ms:.0f}ms step:{step}/{args.iterations}")
            break

        elapsed_ms = training_ms + 1000.0 * (time.perf_counter() - t0)
        scale = lr_multiplier(args, step, elapsed_ms, reserve_s)
        if args.qat_start_frac > 0 and not qat_on and rt.any_true(
                run_progress(args, step, elapsed_ms, reserve_s) >= args.qat_start_frac):
            qat_on = True
            rt.log0(f"qat:enabled step:{step} layers:{enable_qat(model, rule, roles)} rule:{rule.spec}")
        if recurrence_pending and rt.any_true(run_progress(args, step, elapsed_ms, reserve_s) >= args.recur_start_frac):
            recurrence_pending, model.recurrence_on = False, True
            rt.log0(f"recurrence:enabled step:{step} order:{model.block_order()}")
        zero_grad()
        train_loss = run_micro_steps(loader)
        stop_if_non_finite(float(train_loss), f"train loss at step {step}")
        last_good.keep(step)  # these weights gave a finite loss; the update below may not
        frac = min(step / args.muon_momentum_warmup_steps, 1.0) if args.muon_momentum_warmup_steps > 0 else 1.0
        for group in muon.param_groups:
            group["momentum"] = (1 - frac) * args.muon_momentum_warmup_start + frac * args.muon_momentum
        for opt in optimizers:
            for group in opt.param_groups:
                group["lr"] = group["base_lr"] * scale
        if args.grad_clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip_norm)
        for opt in optimizers:
            opt.step()
        zero_grad()
        if ema is not None:
            ema.update(model)
        step += 1

        approx_ms = training_ms + 1000.0 * (time.perf_counter() - t0)
        if args.train_log_every > 0 and (step <= 10 or step % args.train_log_every == 0 or stop_after is not None):
            rt.log0(f"step:{step}/{args.iterations} train_loss:{train_loss.item():.4f} "
                    f"train_time:{approx_ms:.0f}ms step_avg:{approx_ms / step:.2f}ms")
            rt.metric(kind="train", step=step, train_loss=train_loss.item(), lr_scale=scale,
                      train_time_ms=round(approx_ms), tokens_seen=step * args.train_batch_tokens)
        if stop_after is None and rt.any_true(cap_ms is not None and approx_ms >= cap_ms):
            stop_after = step

    stop_if_non_finite(val_bpb, f"val_bpb of the trained weights after step {step}")
    last_good.keep(step)
    # Training is over: free the DDP wrapper while the process group still exists. If its reducer
    # held the group's last reference at exit, the gloo group's destructor would join its threads
    # holding the GIL, and can deadlock (seen under COMPILE=1 on CPU).
    del trained_model
    peak = (torch.cuda.max_memory_allocated() // 2**20 if rt.cuda
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
    rt.log0(f"peak memory {'allocated' if rt.cuda else 'rss'}: {peak} MiB")
    tokens_seen = step * args.train_batch_tokens
    rt.log0(f"tokens_seen:{tokens_seen} tokens_per_s:{tokens_seen / max(training_ms / 1000, 1e-9):.0f}")

    # Quantize, write, reload from the bytes alone, and score what ships.
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    artifact_path = rt.run_dir / "model.golf"
    hessians, gptq_seconds = None, 0.0
    if rule.gptq:  # on the training clock: it ends where the loop stopped, GPTQ_RESERVE_SECONDS early
        rt.sync()
        calibration_start = time.perf_counter()
        hessians, _ = calibrate(args, rt, model, make_loader(), grad_accum, train_dtype)
        rt.sync()
        gptq_seconds = time.perf_counter() - calibration_start
        rt.log0(clocks.calibration_line(training_ms, 1000 * gptq_seconds, args.max_wallclock_seconds))
    if rt.is_main:
        quant.write_artifact(rt.run_dir / "model_raw.golf", state, rule="fp32", roles=roles, meta=meta,
                             compressor="none")
        quant.write_artifact(artifact_path, state, rule=rule, roles=roles, meta=meta, compressor=args.compressor,
                             hessians=hessians)
    rt.barrier()
    # The eval clock starts here: reading and decompressing the artifact count, as do all scoring and TTT.
    eval_clock = clocks.EvalClock(sync=rt.sync)
    with eval_clock.phase("read"):
        loaded = quant.read_artifact(artifact_path)
    compressor = loaded.compressor  # what COMPRESSOR=auto chose
    bytes_model = artifact_path.stat().st_size
    bytes_code = code.packed_bytes  # the self-contained train_gpt.py `golf pack` writes (or this file, if packed)
    rt.log0(f"Serialized model {args.quant_rule}+{compressor}: {bytes_model} bytes")
    rt.log0(f"Code size: {bytes_code} bytes (self-contained train_gpt.py: {len(code.sources.files())} files, "
            f"{code.sources.source_bytes()} bytes of source)")
    rt.log0(f"Total submission size {args.quant_rule}+{compressor}: {bytes_model + bytes_code} bytes "
            f"(cap {CAP_BYTES}, headroom {CAP_BYTES - bytes_model - bytes_code})")

    with eval_clock.phase("build"):
        roundtrip_model = model_from_artifact(loaded.meta, loaded.state_dict).to(rt.device)
    with eval_clock.phase("roundtrip"):
        result = validate(roundtrip_model)
    stop_if_non_finite(result.val_bpb, f"val_bpb of the {rule.spec}+{compressor} artifact",
                       f"Pick a QUANT rule that can hold these weights (unquantized they score {val_bpb:.4f}).")
    tag = f"final_{_tag(args.quant_rule)}_{_tag(compressor)}"
    log_final(rt, f"{tag}_roundtrip", result)
    final, evals, guard = result, {"roundtrip": result.as_dict()}, None
    if plan != EvalPlan(args.train_seq_len, args.train_seq_len):  # the headline is the plan's score
        with eval_clock.phase(plan.name):
            outcome = run_plan(roundtrip_model, val_tokens, table, plan, sidecar=sidecar,
                               batch_windows=plan_batch_windows, device=rt.device, rank=rt.rank,
                               world_size=rt.world_size, autocast_dtype=eval_dtype, seed=args.eval_seed,
                               samples=args.eval_samples)
        final, evals[plan.name] = headline(outcome), outcome.as_dict()
        stop_if_non_finite(final.val_bpb, f"{plan.name} val_bpb of the {rule.spec}+{compressor} artifact")
        log_final(rt, f"{tag}_{plan.name}", final, f" eval_seq_len:{plan.length} stride:{plan.stride}")
        if plan.ttt is not None:
            guard = outcome.guard
            docs = "" if outcome.documents is None else (
                f" documents:{outcome.documents} longest_document:{outcome.longest_document} "
                f"adapter_positions_read:{guard['adapter_positions_read']} "
                "phase_bpb:" + ",".join(f"{b:.4f}" for b in outcome.phase_bpb))
            rt.log0(f"ttt:score_first verified:1 chunks:{outcome.chunks} updates:{outcome.updates} "
                    f"targets_scored:{guard['targets_scored']} positions_trained:{guard['positions_trained']} "
                    f"checks:{guard['checks']} mode:{plan.ttt.mode}{docs}")
    rt.log0(eval_clock.line())
    compliance = clocks.compliance(
        bytes_model=bytes_model, bytes_code=bytes_code, max_wallclock_seconds=args.max_wallclock_seconds,
        train_ms=training_ms, steps=step, stopped_early=stop_after is not None and step < args.iterations,
        gptq=rule.gptq, reserve_s=reserve_s, calibration_s=gptq_seconds, eval_clock=eval_clock,
        final_eval=plan.name, score_first=guard, world_size=rt.world_size)
    rt.log0(clocks.compliance_line(compliance))
    rt.metric(kind="final", step=step, val_loss=final.val_loss, val_bpb=final.val_bpb, label=final.label,
              val_bpb_stderr=final.bpb_stderr, train_time_ms=round(training_ms), tokens_seen=tokens_seen,
              bytes_total=bytes_model + bytes_code)

    summary = {
        **final.as_dict(), "pre_quant_val_loss": val_loss, "pre_quant_val_bpb": val_bpb,
        "official_rule_bytes": rule_difference.official_rule_bytes if rule_difference else final.bytes,
        "final_eval": plan.name, "eval_plan": plan.meta(), "evals": evals, "compliance": compliance,
        "bytes_model": bytes_model, "bytes_code": bytes_code, "bytes_total": bytes_model + bytes_code,
        "steps": step, "train_time_ms": round(training_ms), "tokens_seen": tokens_seen,
        "model_params": sum(p.numel() for p in model.parameters()),
        "peak_memory_mib": peak, "peak_memory_kind": "cuda_allocated" if rt.cuda else "cpu_rss",
        "seed": args.seed, "run_id": args.run_id, "world_size": rt.world_size,
        "grad_accum_steps": grad_accum, "device": rt.device.type, "quant": rule.spec,
        "compressor": compressor, "artifact": artifact_path.name, "gptq_seconds": round(gptq_seconds, 3),
        "qat": qat_on, "source_sha256": code.sources.sha256(), "packed_code": code.packed,
        "config": {k: v for k, v in vars(Hyperparameters).items() if not k.startswith("_")},
        "preset": PRESET or None, "preset_filled": sorted(PRESET_FILLED),
        "model_config": model.config_dict(), "model": args.model,
        "env": dict(sorted({**ENV_SET, **{k.upper(): os.environ[k.upper()] for k in model.config_dict()
                                          if k.upper() in os.environ}}.items())),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "golf": golf.__version__},
    }
    if rt.is_main:
        (rt.run_dir / "result.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
        rt.log0("golf_result " + json.dumps(summary, sort_keys=True), console=False)
    rt.close()


def log_final(rt: Runtime, tag: str, result: ScoreResult, extra: str = "") -> None:
    """A final score's two lines, as the records print them (4 decimals, then the `_exact` 8)."""
    rt.log0(f"{tag} val_loss:{result.val_loss:.4f} val_bpb:{result.val_bpb:.4f} "
            f"eval_time:{1000 * result.seconds:.0f}ms label:{result.label}{extra}")
    rt.log0(f"{tag}_exact val_loss:{result.val_loss:.8f} val_bpb:{result.val_bpb:.8f}")


def eval_plan(args: Hyperparameters) -> EvalPlan:
    """The final evaluation EVAL_SEQ_LEN, EVAL_STRIDE and TTT_* ask for (golf.evalplan)."""
    ttt = None
    if args.ttt_enabled:
        ttt = TTTConfig(chunk_tokens=args.ttt_chunk_tokens, epochs=args.ttt_epochs, lr=args.ttt_lr,
                        momentum=args.ttt_momentum, batch_seqs=args.ttt_batch_seqs, grad_clip=args.ttt_grad_clip,
                        mode=args.ttt_mode, doc_batch=args.ttt_doc_batch, lora_rank=args.ttt_lora_rank,
                        lora_lr=args.ttt_lora_lr, lora_targets=args.ttt_lora_targets,
                        lora_beta1=args.ttt_lora_beta1, lora_beta2=args.ttt_lora_beta2, lora_wd=args.ttt_lora_wd,
                        prefix_docs=args.ttt_prefix_docs, phases=args.ttt_phases)
    return EvalPlan(args.eval_seq_len, args.eval_stride, ttt)


class LastGoodWeights:
    """A copy of the weights that last gave a finite loss, kept on the device and refreshed in one
    fused copy per step, so a NaN from any cause (a learning rate, an overflow, the data, the
    quantizer) can be answered with weights that were still good."""

    def __init__(self, model: models.LanguageModel) -> None:
        # detach() views share storage with the live tensors, which the optimizers update in place.
        self.names, live = zip(*model.state_dict(keep_vars=True).items())
        self.live = [t.detach() for t in live]
        self.saved = [t.clone() for t in self.live]
        self.step: int | None = None  # None: no weights have given a finite loss yet

    def keep(self, step: int) -> None:
        torch._foreach_copy_(self.saved, self.live)
        self.step = step

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {name: t.cpu() for name, t in zip(self.names, self.saved)}


def stop_on_non_finite(rt: Runtime, model: models.LanguageModel, last_good: LastGoodWeights, what: str,
                       advice: str, meta: dict) -> None:
    """Save the last good weights (if any step ever had them), say so in one line, stop every rank."""
    path = rt.run_dir / "model_lastgood.golf"
    if last_good.step is None:
        kept = "no step ever gave a finite loss, so no weights are saved (check the model's init settings)"
    else:
        if rt.is_main:
            quant.write_artifact(path, last_good.state_dict(), rule="fp32", roles=model.checked_roles(), meta=meta,
                                 compressor="none")
        kept = f"the last good weights (step {last_good.step}) are in {path}"
    message = f"non-finite {what}; stopped, {kept}. {advice}"
    rt.log0(f"error: {message}")
    if rt.is_main:
        print(f"train_gpt.py: error: {message}", file=sys.stderr, flush=True)
    rt.close()
    raise SystemExit(1)


if __name__ == "__main__":
    faulthandler.enable()  # a rank killed by a signal (SIGABRT, SIGSEGV) prints its Python stack first
    try:
        main()
    except (golf.errors.GolfError, quant.QuantError) as exc:  # bad input: one line, no traceback
        print(f"train_gpt.py: error: {golf.errors.one_line(str(exc))}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    except OSError as exc:  # the file system said no (permission, no space, not a directory)
        print(f"train_gpt.py: error: {golf.errors.one_line(golf.errors.os_error_line(exc))}", file=sys.stderr,
              flush=True)
        raise SystemExit(2) from None
    leave_worker()
