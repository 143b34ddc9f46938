#!/usr/bin/env bash
# The transfer study of docs/results/mup/transfer, from an empty directory (MLflow: ./mlflow.db).
# Two chains side by side, one core each (OMP_NUM_THREADS=1): muP from the tuned base at
# widths 64-512 (12 jobs), and sp at width 512 (its lr scanned at seed 1337, the best at
# seeds 1338 and 1339); then sp's lr scans at widths 64 and 128 (one seed). The muP runs here
# predate model.base_tuned_by in conf/mup/base_cpu.yaml: it was logged to them afterwards.
set -euo pipefail
export OMP_NUM_THREADS=1
S="python -m llm_sweep --multirun +sweep=mup_transfer_cpu"
D=multirun/mup_transfer_cpu
$S +mup=base_cpu hydra.sweep.dir=$D/mup &
$S sweep.seeds=1 model.n_embd=512 optim.lr=2.5e-4,5e-4,1e-3 hydra.sweep.dir=$D/sp512
$S sweep.seeds=1 model.n_embd=512 optim.lr=5e-4 seed=1338 hydra.sweep.dir=$D/sp512_seed1338  # the scan's best
OMP_NUM_THREADS=2 $S sweep.seeds=1 model.n_embd=512 optim.lr=5e-4 seed=1339 hydra.sweep.dir=$D/sp512_seed1339
wait
export OMP_NUM_THREADS=2
$S sweep.seeds=1 model.n_embd=64 optim.lr=2e-3,4e-3,8e-3 hydra.sweep.dir=$D/sp64
$S sweep.seeds=1 model.n_embd=128 optim.lr=1e-3,2e-3,4e-3 hydra.sweep.dir=$D/sp128
$S sweep.seeds=1 model.n_embd=128 optim.lr=8e-3 hydra.sweep.dir=$D/sp128_8e-3  # 4e-3 was the grid's edge
python -m llm_sweep.report --experiment mup_transfer_cpu --out docs/results/mup/transfer
