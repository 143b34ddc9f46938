#!/usr/bin/env bash
# The iso-FLOP study of docs/results/README.md, from an empty directory (MLflow: ./mlflow.db).
set -euo pipefail
export OMP_NUM_THREADS=1
# the grid: 6 shapes x 3 budgets (1e12, 2.5e12, 6.25e12 FLOPs)
python -m llm_sweep --multirun +sweep=isoflop_cpu
# the smallest shapes, at the budgets where they see the corpus at most 4 times
python -m llm_sweep --multirun +sweep=isoflop_cpu budget.flops=1e12,2.5e12 +shape=1x24,1x32
python -m llm_sweep --multirun +sweep=isoflop_cpu budget.flops=1e12 +shape=1x16
# the learning-rate grids at the smallest budget (each shape's best is in conf/shape/)
python -m llm_sweep --multirun +sweep=isoflop_cpu budget.flops=1e12 optim.lr=1e-3,3e-3,1e-2 \
    +shape=1x32,1x48,1x64,2x64,1x128,2x128,3x128
python -m llm_sweep --multirun +sweep=isoflop_cpu budget.flops=1e12 +shape=1x128 optim.lr=3e-4
python -m llm_sweep --multirun +sweep=isoflop_cpu budget.flops=1e12 +shape=1x32,1x48 optim.lr=3e-2
python -m llm_sweep --multirun +sweep=isoflop_cpu budget.flops=1e12 +shape=1x16,1x24 optim.lr=1e-2,3e-2,1e-1
python -m llm_sweep --multirun +sweep=isoflop_cpu budget.flops=1e12 +shape=1x32 optim.lr=1e-1
# two more seeds of the two shapes nearest each budget's minimum
python -m llm_sweep --multirun +sweep=isoflop_cpu budget.flops=1e12 +shape=1x32,1x48 seed=1,2
python -m llm_sweep --multirun +sweep=isoflop_cpu budget.flops=2.5e12 +shape=2x64,1x48 seed=1,2
python -m llm_sweep --multirun +sweep=isoflop_cpu budget.flops=6.25e12 +shape=2x64,2x128 seed=1,2
python -m llm_sweep.report --experiment isoflop_cpu --fit --out report/isoflop
python -m llm_sweep.plan --fit report/isoflop/fit.json --flops 1e13 --tokenizer bytes --seq-len 128
# the committed files, refit from the committed runs.csv (no MLflow store needed; its flops
# column is each run's logged final/flops, flops_per_token x tokens)
python -m llm_sweep.report --runs-csv docs/results/isoflop/runs.csv --fit --out docs/results/isoflop
# what a study of this law would pin, and the check of the designer on this study
python -m llm_sweep.design --law docs/results/isoflop/fit.json --runs docs/results/isoflop/runs.csv --noise scatter
python -m llm_sweep.design --law docs/results/isoflop/fit.json --budgets 1e12,4e12,1.6e13 --shapes 7 --span 8 \
    --noise 0.013 --flops-per-s 1.5e10 --processes 2
