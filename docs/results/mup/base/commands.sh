#!/usr/bin/env bash
# muP's base tuned once (docs/results/mup/base), from an empty directory: 12 Optuna trials of
# 3 seeds each (36 jobs of 1000 steps at 2 x 64, ~1 min each on 2 cores: ~40 min), then the
# sp defaults at the same base and horizon for reference (2 lrs x 3 seeds).
set -euo pipefail
python -m llm_sweep --multirun +sweep=mup_base_cpu hydra.sweeper.n_trials=12
cp multirun/mup_base_cpu/mup/base_cpu.yaml conf_mup_base_cpu.yaml  # conf/mup/base_cpu.yaml, with its header
python -m llm_sweep --multirun model=tiny batch=cpu data=shakespeare model.n_layer=2 model.n_embd=64 \
    data.tokenizer=bytes compile=false dtype=fp32 budget.time=null budget.steps=1000 eval.interval=250 \
    eval.batches=24 checkpoint.final=false optim.lr=2e-3,3.5e-3 sweep.seeds=3 tracking=none hydra.sweep.dir=sp_base
