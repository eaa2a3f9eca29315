#!/usr/bin/env bash
# The prepared GPU benchmark (docs/benchmarks.md, "GPU"): one call on a GPU machine that has torch and transformers
# but nothing else of nerflow's. Needs the bundle of bench/prepare_gpu_bundle.py (carried as bench/out/gpu).
# Rows are written as each job completes, the most important first (MiniLM seed 42; bert-base size; seed 7), so a
# call cut off at its time limit still brings back what it finished.
#
#   OUT=bench/out/gpu-results bash bench/gpu_benchmark.sh
#   python bench/compare_speed.py bench/out/gpu-results/minilm.json      # target on a GPU: >= 3x, equal F1
set -uo pipefail
OUT=${OUT:-bench/out/gpu-results}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PY:-python3} DEVICE=${DEVICE:-cuda}
extra=(${BENCH_EXTRA:-})   # e.g. "--limit-train 50 --epochs 1" for a dry run on a CPU
if [[ $DEVICE == cuda ]]; then   # the bundle's wheels are built for the device's CPython 3.12
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/gpu-site \
        bench/out/gpu/wheels/*.whl || exit 1
    export PYTHONPATH=/tmp/gpu-site${PYTHONPATH:+:$PYTHONPATH}
fi
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv >"$OUT/gpu.txt" 2>&1
"$PY" -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" \
    | tee -a "$OUT/gpu.txt"
common=(--data-dir bench/out/gpu/conll2003 --tokenizer bench/out/gpu/minilm-fp16 --device "$DEVICE" --work /tmp/gpu-work)
minilm=(--model bench/out/gpu/minilm-fp16 --systems recipe nerflow nerflow:train.batch_tokens=8192)
"$PY" bench/train_speed.py "${common[@]}" "${minilm[@]}" --seeds 42 --out "$OUT/minilm.json" "${extra[@]}"
"$PY" bench/train_speed.py "${common[@]}" --model random:bert-base --epochs 1 --seeds 42 --systems recipe nerflow \
    --out "$OUT/bert_base.json" "${extra[@]}"
"$PY" bench/train_speed.py "${common[@]}" "${minilm[@]}" --seeds 7 --out "$OUT/minilm.json" --append "${extra[@]}"
