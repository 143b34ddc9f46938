#!/usr/bin/env bash
# The clean iso-FLOP study of docs/results/isoflop_mup/, from an empty directory (MLflow:
# ./mlflow.db). Needs data=english: pip install -e '.[english]'. Two runs at once, one
# thread each.
set -euo pipefail
export OMP_NUM_THREADS=1
python -m llm_sweep --multirun +sweep=isoflop_mup_cpu
python -m llm_sweep --multirun +sweep=isoflop_mup_cpu budget.flops=4e12 model.n_embd=32,48,64,80,96,128,160
python -m llm_sweep --multirun +sweep=isoflop_mup_cpu budget.flops=8e12 model.n_embd=32,48,64,80,96,128,160
python -m llm_sweep --multirun +sweep=isoflop_mup_cpu model.n_embd=32,48,64 seed=1,2
python -m llm_sweep.report --experiment isoflop_mup_cpu --fit --out docs/results/isoflop_mup
# the designer, checked on this study (its own design at its realised scatter) ...
python -m llm_sweep.design --law docs/results/isoflop_mup/fit.json --runs docs/results/isoflop_mup/runs.csv \
    --noise scatter
# ... and what this design, and larger ones, would pin at the measured seed noise
python -m llm_sweep.design --law docs/results/isoflop_mup/fit.json --budgets 1e12,4e12,8e12 --shapes 7 --span 8 --noise seed \
    --flops-per-s 2.36e10 --processes 2
python -m llm_sweep.design --law docs/results/isoflop_mup/fit.json --budgets 1e12,4e12,1.6e13 --shapes 7 --span 8 --noise seed \
    --flops-per-s 2.36e10 --processes 2
python -m llm_sweep.design --law docs/results/isoflop_mup/fit.json --budgets 1e12,4e12,1.6e13,6.4e13 --shapes 9 --span 16 --noise seed \
    --flops-per-s 2.36e10 --processes 2
python -m llm_sweep.design --law docs/results/isoflop_mup/fit.json --budgets 1e12,4e12,1.6e13,6.4e13 --shapes 9 --span 16 --seeds 3 --noise seed \
    --flops-per-s 2.36e10 --processes 2
python -m llm_sweep.design --law docs/results/isoflop_mup/fit.json --budgets 1e12,4e12,1.6e13,6.4e13,2.56e14 --shapes 9 --span 16 --seeds 2 --noise seed \
    --flops-per-s 2.36e10 --processes 2
