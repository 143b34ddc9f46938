#!/usr/bin/env bash
# The GPU-scale iso-FLOP study (sweeps/isoflop_gpu.yaml) in one device command: 25 runs of
# `python -m llm_sweep`, eight processes at once on the one GPU (small models leave it idle
# alone), most valuable first, each run's files bundled into $OUT as soon as it ends:
#   setup   install the carried wheels the machine lacks; check the imports and the GPU (45 s)
#   corpus  unpack the carried token shards of data=english (bytes) into the cache, list the
#           jobs and refuse any whose tokens would not fit in the corpus (30 s)
#   study   the STUDY grids below in order: no job starts after 150 s, each is killed at 100 s
# (45 + 30 + 150 + 100 = 325 s at most; expected ~3 min, mostly start-up and compiles: four
# rounds of eight, the first compiling each width cold). Back in $OUT: gpu_isoflop.log
# (everything printed), jobs.tsv (each job: tokens, steps, FLOPs), runs.jsonl (each run that
# ended: exit code, seconds, summary), isoflop_runs.tar.gz (the run directories: .hydra/,
# metrics.jsonl, summary.json, status.json, and each run's log). A run killed at its limit
# stays `running` in its status.json and is imported FAILED. Exit status 1 if a job failed,
# 2 if setup or corpus did.
#
# Here, once: the wheels of the config stack (.whl/, ~8 MB) and the corpus (.corpus/, 9.2 MiB:
# the 46.2M bytes of data=english as xz-compressed uint16 token shards), both gitignored:
#   pip install -e '.[english]'
#   bash benchmarks/gpu_isoflop.sh --wheels
#   bash benchmarks/gpu_isoflop.sh --corpus
# then, with the device tool, from the repository root:
#   run(command="bash benchmarks/gpu_isoflop.sh", carry=[".whl", ".corpus"], timeout_s=340)
# and back here, into MLflow and the report (the bundle, or a folder it was unpacked into):
#   python -m llm_sweep.tracking.import_runs <files_at>/isoflop_runs.tar.gz
#   python -m llm_sweep.report --experiment isoflop_gpu --fit --out docs/results/isoflop_gpu
#
# `--jobs` prints the job list; GPU_ISOFLOP_DRY=1 runs the same steps at tiny scale on the
# CPU, on data=shakespeare, three jobs two at a time (tests/test_gpu_isoflop.py).
set -uo pipefail
cd "$(dirname "$0")/.."

PY=${GPU_ISOFLOP_PYTHON:-python3}
DRY=${GPU_ISOFLOP_DRY:-}
CORPUS_DIR=${GPU_ISOFLOP_CORPUS:-.corpus}
SWEEP=isoflop_gpu
# Each line is one Hydra sweep on top of +sweep=isoflop_gpu, as that file's header lists them;
# the empty line is the sweep's own params.
STUDY=(
  ""
  "budget.flops=5e13,1e14 +shape=4x64"
  "budget.flops=1e14,2e14 +shape=4x320"
  "budget.flops=1e14 +shape=4x64 optim.lr=3e-3,1.2e-2"
  "budget.flops=1e14 +shape=4x128 optim.lr=3e-3,1.2e-2"
  "budget.flops=1e14 +shape=4x192 optim.lr=2e-3,8e-3"
  "budget.flops=1e14 +shape=4x256 optim.lr=1.5e-3,6e-3"
  "budget.flops=1e14 +shape=4x64,4x128,4x192,4x256 seed=1"
)
if [ -n "$DRY" ]; then  # the same steps at tiny scale, on the CPU
  DATA=(data=shakespeare)
  SCALE=(device=cpu dtype=fp32 compile=false budget.steps=2 batch.micro_batch_size=2
         batch.seq_len=32 model.max_seq_len=32 eval.interval=0 eval.final_batches=1)
  PARALLEL=${GPU_ISOFLOP_PARALLEL:-2} MAX_JOBS=3 XZ_PRESET=0
else
  DATA=() SCALE=() PARALLEL=${GPU_ISOFLOP_PARALLEL:-8} MAX_JOBS=1000 XZ_PRESET=6
fi
START_BY=150 JOB_LIMIT=100  # the study: no job starts after START_BY s, each runs at most JOB_LIMIT s

if [ "${1:-}" = --wheels ]; then
  exec bash benchmarks/gpu_check.sh --wheels
fi

jobs_tsv() {  # name, tokens, steps, FLOPs and overrides of every job, in order; refuse what repeats data
  "$PY" - "$SWEEP" "$MAX_JOBS" "${DATA[*]:-}" "${SCALE[*]:-}" "${STUDY[@]}" <<'EOF'
import itertools, math, sys
from hydra import compose, initialize_config_dir
from llm_sweep.core.budget import Budget
from llm_sweep.core.config import CONF_DIR, SWEEPS_DIR, load_config, register_configs
from llm_sweep.core.size import flops_per_token
from llm_sweep.data.cache import prepare_dataset
import yaml

sweep, max_jobs, lines = sys.argv[1], int(sys.argv[2]), sys.argv[5:]
data, scale = sys.argv[3].split(), sys.argv[4].split()
params = yaml.safe_load((SWEEPS_DIR / f"{sweep}.yaml").read_text())["hydra"]["sweeper"]["params"]
jobs = []
for line in lines:
    grid = {**{k: str(v).split(",") for k, v in params.items()},
            **{k: v.split(",") for k, v in (o.split("=", 1) for o in line.split())}}
    for values in itertools.product(*grid.values()):
        job = [f"{k}={v}" for k, v in zip(grid, values)]
        if job not in jobs:
            jobs.append(job)
register_configs()
corpus = None
with initialize_config_dir(str(CONF_DIR), version_base=None):
    for job in jobs[:max_jobs]:
        run = load_config(compose("config", overrides=[f"+sweep={sweep}", *job, *data, *scale]))
        corpus = corpus or len(prepare_dataset(run.data, progress=False).train)
        per_token, per_step = flops_per_token(run.model, run.batch.seq_len), run.batch.tokens_per_step
        steps = min(Budget(run.budget, per_token).steps_allowed(per_step, 1.0).values())
        tokens = steps * per_step
        if tokens >= corpus:
            sys.exit(f"{' '.join(job)}: {tokens:,} tokens would repeat data ({corpus:,} in the corpus)")
        opts = dict(o.lstrip("+").split("=", 1) for o in job)
        name = "-".join([opts["shape"], f"flops{opts['budget.flops']}",
                         *(f"{key.split('.')[-1]}{opts[key]}" for key in ("optim.lr", "seed") if key in opts)])
        print("\t".join([name, str(tokens), str(int(steps)), f"{tokens * per_token:.3g}", *job]))
EOF
}

if [ "${1:-}" = --jobs ]; then
  jobs_tsv
  exit
fi

if [ "${1:-}" = --corpus ]; then  # here: the token shards of the sweep's data, as one .tar.xz
  cache=$(mktemp -d)
  # (a budget only because the whole config is checked; the data decide the shards)
  "$PY" -m llm_sweep.prepare "+sweep=$SWEEP" "${DATA[@]}" budget.steps=1 data.cache_dir="$cache" || exit 1
  mkdir -p "$CORPUS_DIR" && rm -f "$CORPUS_DIR"/*.tar.xz
  "$PY" - "$cache" "$CORPUS_DIR" "$XZ_PRESET" <<'EOF' || exit 1
import sys, tarfile
from pathlib import Path
cache, out = Path(sys.argv[1]), Path(sys.argv[2])
(entry,) = [p for p in cache.iterdir() if p.is_dir()]  # one cache entry: this sweep's data
target = out / f"{entry.name}.tar.xz"
with tarfile.open(target, "w:xz", preset=int(sys.argv[3])) as tar:
    tar.add(entry, arcname=entry.name)
size = sum(f.stat().st_size for f in entry.iterdir())
print(f"{target}: {target.stat().st_size / 2**20:.1f} MiB ({size / 2**20:.1f} MiB of shards)")
EOF
  rm -rf "$cache"
  exit 0
fi

OUT=${OUT:-$(mktemp -d /tmp/gpu_isoflop_out.XXXX)}  # the device tool sets OUT
RUNS=${RUNS:-$(mktemp -d /tmp/gpu_isoflop_runs.XXXX)}  # run dirs, logs and the cache: not in $OUT
SITE=${GPU_ISOFLOP_SITE:-/tmp/gpu_isoflop_site}
mkdir -p "$OUT" "$RUNS/runs" "$RUNS/logs"
LOG=$OUT/gpu_isoflop.log
: >"$LOG"
export PYTHONUNBUFFERED=1 LLM_SWEEP_CACHE=$RUNS/cache
export PYTHONPATH=$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}
# Eight processes compiling at once share the CPU cores.
export TORCHINDUCTOR_COMPILE_THREADS=$(( $(nproc) / PARALLEL > 0 ? $(nproc) / PARALLEL : 1 )) OMP_NUM_THREADS=2

. benchmarks/device_wheels.sh  # install_missing_wheels

setup() {
  install_missing_wheels || return 1
  "$PY" - <<'EOF'
import importlib, os, sys
missing = []
for module in ("torch", "numpy", "yaml", "hydra", "omegaconf", "antlr4", "tiktoken", "regex",
               "tqdm", "filelock", "packaging", "llm_sweep.job"):
    try:
        importlib.import_module(module)
    except Exception as exc:
        missing.append(f"{module} ({type(exc).__name__}: {exc})")
if missing:
    sys.exit("missing: " + "; ".join(missing)
             + "\nbuild .whl/ with `bash benchmarks/gpu_isoflop.sh --wheels` and carry it")
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "python", sys.version.split()[0])
if not os.environ.get("GPU_ISOFLOP_DRY"):
    if not torch.cuda.is_available():
        sys.exit("no CUDA device visible to torch")
    print(torch.cuda.get_device_name(), f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB")
EOF
}

corpus() {  # unpack the carried shards where the runs' cache is, then list the jobs
  local archives=("$CORPUS_DIR"/*.tar.xz)
  [ -e "${archives[0]}" ] || { echo "no corpus in $CORPUS_DIR/: build it with" \
    "\`bash benchmarks/gpu_isoflop.sh --corpus\` and carry it"; return 1; }
  "$PY" - "$LLM_SWEEP_CACHE" "${archives[@]}" <<'EOF' || return 1
import sys, tarfile
for archive in sys.argv[2:]:
    with tarfile.open(archive) as tar:
        tar.extractall(sys.argv[1], filter="data")
    print(f"unpacked {archive} into {sys.argv[1]}")
EOF
  jobs_tsv >"$RUNS/jobs.tsv" || return 1
  cp "$RUNS/jobs.tsv" "$OUT/jobs.tsv"
  awk -F'\t' '{ n++; t += $2; f += $4 } END { printf "%d jobs, %.3g tokens, %.3g FLOPs in all\n", n, t, f }' \
    "$RUNS/jobs.tsv"
}

bundle() {  # the run directories so far, into $OUT (rebuilt whole; renamed into place)
  local tmp=$OUT/.isoflop_runs.$$.tmp
  tar -czf "$tmp" -C "$RUNS" --exclude=checkpoints runs logs && mv -f "$tmp" "$OUT/isoflop_runs.tar.gz"
}

run_one() {  # run_one NAME OVERRIDES...: one job, unless the study is past its start deadline
  local name=$1 start rc
  shift
  if [ "$(date +%s)" -gt "$DEADLINE" ]; then
    echo "=== $name: not started, the study is past its ${START_BY} s" >>"$LOG"
    return 0
  fi
  start=$(date +%s)
  echo "=== $name: start $*" >>"$LOG"
  timeout -k 5 "$JOB_LIMIT" "$PY" -m llm_sweep "+sweep=$SWEEP" "$@" "${DATA[@]}" "${SCALE[@]}" \
    tracking=none hydra.mode=RUN hydra.run.dir="$RUNS/runs/$name" >"$RUNS/logs/$name.log" 2>&1
  rc=$?
  echo "=== $name: exit $rc after $(( $(date +%s) - start )) s" >>"$LOG"
  "$PY" - "$RUNS/runs/$name" "$name" "$rc" "$(( $(date +%s) - start ))" "$*" >>"$OUT/runs.jsonl" <<'EOF'
import json, sys
from pathlib import Path
run_dir, name, overrides = Path(sys.argv[1]), sys.argv[2], sys.argv[5]
rc, seconds = int(sys.argv[3]), int(sys.argv[4])
summary = run_dir / "summary.json"
record = {"name": name, "exit": rc, "seconds": seconds, "overrides": overrides.split(),
          "summary": json.loads(summary.read_text()) if summary.exists() else None}
sys.stdout.write(json.dumps(record) + "\n")  # one write: lines of concurrent jobs never interleave
EOF
  bundle
  return "$rc"
}

failed=0
phase() {  # phase NAME SECONDS FUNCTION: run under a time limit, log its output
  local name=$1 limit=$2 start=$SECONDS rc
  echo "=== $name (limit ${limit} s)" | tee -a "$LOG"
  timeout -k 5 "$limit" bash -c "$3" 2>&1 | tee -a "$LOG"
  rc=${PIPESTATUS[0]}
  echo "=== $name: exit $rc after $((SECONDS - start)) s" | tee -a "$LOG"
  return "$rc"
}

{ date -u
  command -v nvidia-smi >/dev/null &&
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
} 2>&1 | tee -a "$LOG"
export -f install_missing_wheels setup corpus jobs_tsv bundle run_one
export PY SITE RUNS OUT LOG SWEEP CORPUS_DIR START_BY JOB_LIMIT MAX_JOBS GPU_ISOFLOP_DRY="$DRY"
export DATA_ARGS="${DATA[*]:-}" SCALE_ARGS="${SCALE[*]:-}" STUDY_LINES
STUDY_LINES=$(printf '%s\n' "${STUDY[@]}")
# Exported functions see arrays only as words: rebuild them in each shell that runs a job.
REBUILD='read -ra DATA <<<"$DATA_ARGS"; read -ra SCALE <<<"$SCALE_ARGS"; mapfile -t STUDY <<<"$STUDY_LINES"'
phase setup 45 "$REBUILD; setup" || { echo "setup failed: nothing run" | tee -a "$LOG"; exit 2; }
phase corpus 30 "$REBUILD; corpus" || { echo "corpus failed: nothing run" | tee -a "$LOG"; exit 2; }

export DEADLINE=$(( $(date +%s) + START_BY ))
echo "=== study: ${PARALLEL} at once, none started after ${START_BY} s, each at most ${JOB_LIMIT} s" |
  tee -a "$LOG"
cut -f1,5- "$RUNS/jobs.tsv" | xargs -P "$PARALLEL" -L 1 bash -c "$REBUILD; run_one \"\$@\"" _ || failed=1
bundle
"$PY" - "$OUT/runs.jsonl" <<'EOF' | tee -a "$LOG"
import json, sys
from pathlib import Path
records = Path(sys.argv[1])
rows = [json.loads(line) for line in records.read_text().splitlines()] if records.exists() else []
print(f"{'run':<28} {'exit':>4} {'s':>4} {'val loss':>8} {'tokens':>11} {'tokens/s':>10} {'MFU':>6}")
for r in rows:
    s = r["summary"] or {}
    mfu = f"{100 * s['mfu']:.1f}%" if s.get("mfu") else "-"
    print(f"{r['name']:<28} {r['exit']:>4} {r['seconds']:>4} {s.get('val_loss', float('nan')):>8.4f} "
          f"{s.get('tokens', 0):>11,} {s.get('tokens_per_s', 0):>10,.0f} {mfu:>6}")
EOF
echo "results in $OUT (run directories in $RUNS); failed=$failed" | tee -a "$LOG"
exit "$failed"
