#!/usr/bin/env bash
# The package as users install it: build a wheel, install it (not editable) into a fresh
# virtualenv, and from an empty directory run one short job, one named sweep's
# composition and a 2-trial Optuna sweep. Fails on the first error.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
WORK=$(mktemp -d /tmp/llm_sweep_wheel.XXXX)
trap 'rm -rf "$WORK"' EXIT

python3 -m pip wheel -q --no-deps -w "$WORK/dist" "$REPO"
python3 -m venv "$WORK/venv"
PY=$WORK/venv/bin/python
"$PY" -m pip install -q --upgrade pip
"$PY" -m pip install -q torch==2.13.0   # the CPU build; an unpinned torch pulls CUDA
"$PY" -m pip install -q "$WORK"/dist/llm_sweep-*.whl

mkdir "$WORK/empty" && cd "$WORK/empty"
export LLM_SWEEP_CACHE=$WORK/cache
"$PY" - <<'PY'
import llm_sweep.core.config as config
assert "site-packages" in str(config.CONF_DIR), config.CONF_DIR
print("configs shipped in", config.CONF_DIR)
PY
SMALL=(model.n_layer=1 model.n_embd=64 batch.micro_batch_size=4 batch.seq_len=32
       budget.time=null budget.steps=3 eval.interval=0 eval.final_batches=2 compile=false)
echo "--- one short job"
"$PY" -m llm_sweep "${SMALL[@]}" tracking=none hydra.run.dir=run
test -f run/summary.json
echo "--- a named sweep's composition"
"$PY" -m llm_sweep +sweep=width_vs_depth_cpu --cfg job | grep -q "experiment: width_vs_depth_cpu"
"$PY" -m llm_sweep +sweep=lr_search_cpu --cfg hydra | grep -q "study_name: lr_search_cpu"
echo "--- a 2-trial Optuna sweep"
"$PY" -m llm_sweep --multirun hydra/sweeper=optuna hydra.sweeper.n_trials=2 hydra.sweeper.n_jobs=1 \
    'optim.lr=tag(log,interval(1e-4,1e-2))' "${SMALL[@]}" hydra.sweep.dir=sweep
grep -q "best_value" sweep/optimization_results.yaml
test -f mlflow.db
echo "wheel check passed"
