#!/usr/bin/env bash
# AR vs MDLM at equal parameters (but MDLM's one mask id) and equal CPU training time: both train the
# `golf demo` shape on the embedded sample, 2 ranks x 1 thread, for SECONDS of wall clock each, one
# after the other under the CPU lock; then bench/mdlm_vs_ar.py scores them and bench/quant_suite.py
# measures their int8 and best-mixed-rule gaps. Run nothing else beside it.
#
#   bash bench/mdlm_vs_ar.sh [SECONDS=600]     (about 2 x SECONDS + 15 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
shape=(DATA_PATH=embedded TOKENIZER_PATH=embedded NUM_LAYERS=4 MODEL_DIM=256 NUM_HEADS=4 NUM_KV_HEADS=2
       TRAIN_SEQ_LEN=256 TRAIN_BATCH_TOKENS=8192 ITERATIONS=100000 WARMDOWN_FRAC=0.3 VAL_LOSS_EVERY=0
       TRAIN_LOG_EVERY=50 SEED=1337 OMP_NUM_THREADS=1 MAX_WALLCLOCK_SECONDS="$seconds")
for model in ar mdlm; do
  run="runs/bench-$model"
  [ -f "$run/result.json" ] && { echo "$run: done, kept"; continue; }
  rm -rf "$run"
  mkdir -p runs
  # MDLM's trainer score is a bound: EVAL_SAMPLES stratified draws per window (AR ignores it).
  env "${shape[@]}" MODEL="$model" EVAL_SAMPLES=4 RUN_DIR="$run" RUN_ID="bench-$model" \
    flock /tmp/golf-cpu.lock /usr/bin/time -f "%e %U %S" -o "$run.time" \
    python -m torch.distributed.run --standalone --nproc_per_node=2 train_gpt.py
done
flock /tmp/golf-cpu.lock python bench/mdlm_vs_ar.py runs/bench-ar runs/bench-mdlm --samples 8 --chain-windows 16 \
  --out bench/results/mdlm-vs-ar.json
flock /tmp/golf-cpu.lock python bench/quant_suite.py runs/bench-ar runs/bench-mdlm --rule int8 \
  --rule "emb=int8,attn=int4,mlp=int4,gptq=1" --out bench/results/mdlm-vs-ar-quant.json
