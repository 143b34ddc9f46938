#!/usr/bin/env bash
# The learning-rate transfer study of docs/results/mup/, from an empty directory (MLflow:
# ./mlflow.db). Each sweep runs its jobs one after another on all cores.
set -euo pipefail
# width: 8 lrs x widths 64..512 at 2 layers, sp and muP (base width 64): 64 runs of 200 steps
python -m llm_sweep --multirun +sweep=lr_transfer_cpu
# depth: 8 lrs x 2, 4, 8 layers at width 64, sp and CompleteP (base 2 x 64): 48 runs
python -m llm_sweep --multirun +sweep=lr_transfer_depth_cpu
python -m llm_sweep.report --experiment lr_transfer_cpu --out docs/results/mup/width
python -m llm_sweep.report --experiment lr_transfer_depth_cpu --out docs/results/mup/depth
# the coordinate checks (activation RMS against width, and against depth)
python -m llm_sweep.coordcheck "coordcheck.parametrizations=[sp,mup]" hydra.run.dir=docs/results/mup/coordcheck_width
python -m llm_sweep.coordcheck coordcheck.parametrizations=[sp,completep] coordcheck.widths=[128] \
    coordcheck.depths=[2,4,8,16] model.base_width=128 model.base_depth=2 hydra.run.dir=docs/results/mup/coordcheck_depth
