#!/usr/bin/env bash
# Accelerator checks on one GPU: cuDNN vs XLA attention, bf16 train-step time and MFU.
#   OUT=results PEAK_TFLOPS=989 CHECKS="attention dit d2it" bash launch/accelerator_check.sh
# CHECKS picks the groups (default all): attention (cuDNN vs XLA), dit (DiT-XL/2, DiT-S/2),
# d2it (D²iT-XL content transformer, both layouts), moda (MoDA-B motion generator); renderer (the
# 256-px renderer at LivePortrait's widths, float32) only when named: on one H100 its compile and
# steps at batch 16 did not finish within T=100 s, so give it T=300. T (default 150 s) limits each
# benchmark; D2_SHORT=1 skips the third D²iT run. On an 80 GB card the region layout at batch 256
# does not fit (106 GiB); it fails with an out-of-memory line and the script goes on.
# Writes $OUT/results.jsonl (one JSON object per check) and $OUT/env.txt.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-accel_out}
PEAK=${PEAK_TFLOPS:-989}           # H100 SXM dense bf16
PY=${PYTHON:-python3}
CHECKS=${CHECKS:-attention dit d2it moda}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${EXTRA_PYTHONPATH:+:$EXTRA_PYTHONPATH}"
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.92
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  $PY -c "import jax, flax, optax, orbax.checkpoint as o; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, jax.devices())"
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
run() { echo "== $*"; timeout "${T:-150}" $PY -m jaxmoda.bench "$@" --peak-tflops "$PEAK" --matmul-n 8192 2>>"$OUT/stderr.txt" | tee -a "$OUT/results.jsonl"; }
has() { [[ " $CHECKS " == *" $1 "* ]]; }
if has attention; then
  timeout 120 $PY -m jaxmoda.bench --attention-check 2>>"$OUT/stderr.txt" | tee -a "$OUT/results.jsonl"
fi
if has dit; then
  run --config configs/dit/xl2.py --config.batch_size=64
  run --config configs/dit/xl2.py --config.batch_size=64 --config.model.attention=xla
  run --config configs/dit/xl2.py --config.batch_size=128
  run --config configs/dit/xl2.py --config.batch_size=256 --config.microbatches=2
  run --config configs/dit/xl2.py --config.batch_size=256 --config.model.remat=dots
  run --config configs/dit/s2.py --config.batch_size=256 --config.model.dtype=bfloat16 --config.model.attention=auto
fi
if has d2it; then
  # The content transformer's step (the DGT off: the analytic MFU counts the DCT), fine ratio r = 0.5.
  D2=(--config configs/d2it/imagenet256_xl.py --config.model.dgt.enabled=false --config.d2it.example_fine_ratio=0.5 --steps 6 --warmup 2)
  run "${D2[@]}" --config.batch_size=128 --config.model.dct.layout=mixed
  run "${D2[@]}" --config.batch_size=256 --config.model.dct.layout=region
  [ -n "${D2_SHORT:-}" ] || run "${D2[@]}" --config.batch_size=64 --config.model.dct.layout=mixed
fi
if has moda; then
  run --config configs/moda/hdtf_b.py --config.batch_size=256 --steps 6 --warmup 2
fi
if has renderer; then
  run --config configs/moda/renderer_256.py --config.batch_size=16 --steps 6 --warmup 2
fi
tail -5 "$OUT/stderr.txt" 2>/dev/null
