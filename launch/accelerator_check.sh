#!/usr/bin/env bash
# Accelerator checks on one GPU: cuDNN vs XLA attention, bf16 train-step time and MFU of DiT configs.
#   OUT=results PEAK_TFLOPS=989 bash launch/accelerator_check.sh
# Writes $OUT/results.jsonl (one JSON object per check) and $OUT/env.txt.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-accel_out}
PEAK=${PEAK_TFLOPS:-989}           # H100 SXM dense bf16
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${EXTRA_PYTHONPATH:+:$EXTRA_PYTHONPATH}"
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.92
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  $PY -c "import jax, flax, optax, orbax.checkpoint as o; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, jax.devices())"
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
run() { echo "== $*"; timeout "${T:-150}" $PY -m jaxmoda.bench "$@" --peak-tflops "$PEAK" --matmul-n 8192 2>>"$OUT/stderr.txt" | tee -a "$OUT/results.jsonl"; }
timeout 120 $PY -m jaxmoda.bench --attention-check 2>>"$OUT/stderr.txt" | tee -a "$OUT/results.jsonl"
run --config configs/dit/xl2.py --config.batch_size=64
run --config configs/dit/xl2.py --config.batch_size=64 --config.model.attention=xla
run --config configs/dit/xl2.py --config.batch_size=128
run --config configs/dit/xl2.py --config.batch_size=256 --config.microbatches=2
run --config configs/dit/xl2.py --config.batch_size=256 --config.model.remat=dots
run --config configs/dit/s2.py --config.batch_size=256 --config.model.dtype=bfloat16 --config.model.attention=auto
tail -5 "$OUT/stderr.txt"
