#!/usr/bin/env bash
# The seed's three questions over seeds at CPU scale (docs/results/seed_questions/), from an
# empty directory (MLflow: ./mlflow.db). Every run on one core with one thread (taskset -c 1),
# nothing else on that core: a time budget is only as fair as its core is quiet.
# About 50 min in all (67 runs of 30 s plus evaluation).
set -euo pipefail
export OMP_NUM_THREADS=1
C="taskset -c 1 python -m llm_sweep --multirun"
COMMON="data.tokenizer=bytes compile=false eval.interval=50 eval.batches=4 checkpoint.final=false sweep.seeds=5"

# 1. Wider or deeper at equal time (30 s): reference 2 x 128, wider 2 x 256, deeper 4 x 128.
#    Each command gets its own sweep folder (a folder holding another config's jobs is refused).
$C +sweep=width_vs_depth_cpu $COMMON budget.time=30s model.n_layer=2 model.n_embd=128,256
$C +sweep=width_vs_depth_cpu $COMMON budget.time=30s model.n_layer=4 model.n_embd=128 \
    hydra.sweep.dir=multirun/width_vs_depth_cpu_deeper

# 2. The same shapes at equal compute (1.5e12 FLOPs, what the reference does in ~30 s).
F="budget.time=null budget.flops=1.5e12 tracking.experiment=width_vs_depth_flops_cpu"
$C +sweep=width_vs_depth_cpu $COMMON $F model.n_layer=2 model.n_embd=128,256 \
    hydra.sweep.dir=multirun/width_vs_depth_flops_cpu
$C +sweep=width_vs_depth_cpu $COMMON $F model.n_layer=4 model.n_embd=128 \
    hydra.sweep.dir=multirun/width_vs_depth_flops_cpu_deeper

# 3. AdamW vs SophiaG at 2 x 128 and 30 s, each over its own lr grid (SophiaG's best was at the
#    low edge of 1e-3..1e-2, so its grid goes on down).
$C +sweep=optimizer_cpu $COMMON budget.time=30s model.n_embd=128 optim=adamw,sophiag optim.lr=1e-3,3e-3,1e-2
$C +sweep=optimizer_cpu $COMMON budget.time=30s model.n_embd=128 optim=sophiag optim.lr=1e-4,3e-4 \
    hydra.sweep.dir=multirun/optimizer_cpu_sophiag_low

for e in width_vs_depth width_vs_depth_flops optimizer; do
    python -m llm_sweep.report --experiment ${e}_cpu --out docs/results/seed_questions/$e
done
# seeds a side for a gap of 0.05 at the noise these runs measured
python -m llm_sweep.design --gap 0.05 --runs docs/results/seed_questions/width_vs_depth/runs.csv
