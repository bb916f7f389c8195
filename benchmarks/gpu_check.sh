#!/bin/bash
# The GPU checks in one call (docs/performance.md): cuDNN attention against the
# fp32 reference, then the ~350M decoder's train step (tokens/s, MFU, memory) in a few
# variants. Needs gin-config as a wheel in .whl/ where the image lacks it (.whl/ is
# git-ignored: name it in the device tool's `carry`). Logs go to $OUT (or
# ./gpu_check_out); a summary table is printed last; exits 1 if any check failed.
#   bash benchmarks/gpu_check.sh [variant ...]   (default: all four below)
set -o pipefail
OUT=${OUT:-gpu_check_out}
status=0
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/tmp/jax_cache
if ! python3 -c 'import gin' 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
    .whl/*.whl && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv
python3 -c 'import jax, flax, optax, orbax.checkpoint as o; print("jax", jax.__version__, "flax", flax.__version__, "optax", optax.__version__, jax.devices())'

timeout 100 python3 benchmarks/attention_check.py --length=2048 --batch=4 --impls=cudnn,einsum 2>&1 \
  | grep -v '^[IW][0-9]' | tee "$OUT/attention_check.txt" || status=1

bench() {  # name, then flags
  local name=$1; shift
  echo "== $name: $*"
  timeout 300 python3 benchmarks/train_step.py --gin_file=gin_configs/runs/bench_350m_gpu.gin \
    --steps=10 --warmup=3 "$@" 2>&1 | grep -v '^[IW][0-9]' | tee "$OUT/bench_$name.txt" \
    || status=1
}
for variant in ${*:-cudnn_b8_one_segment cudnn_b8_packed cudnn_b16_one_segment xla_attention_b8}; do
  case $variant in
    cudnn_b8_one_segment) bench $variant --one_segment --gin_bindings=BATCH_SIZE=8 ;;
    cudnn_b8_packed) bench $variant --gin_bindings=BATCH_SIZE=8 ;;
    cudnn_b16_one_segment) bench $variant --one_segment ;;
    cudnn_b16_packed) bench $variant ;;
    xla_attention_b8) bench $variant --one_segment --gin_bindings=BATCH_SIZE=8 \
        --gin_bindings="TransformerConfig.attention_impl='dot_product'" ;;
    *) echo "unknown variant $variant"; exit 2 ;;
  esac
done

echo "== summary"
for f in "$OUT"/bench_*.txt; do
  printf '%-28s %s | %s\n' "$(basename "$f" .txt)" "$(grep '^jax' "$f" | cut -c9-)" \
    "$(grep -E '^(MFU by|peak device)' "$f" | tr '\n' ' ')"
done
grep -E '^(mask|causal|packed|bidirectional|prefix)|FAIL' "$OUT/attention_check.txt"
exit $status
