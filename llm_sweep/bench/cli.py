"""`python -m llm_sweep.bench`: training throughput per mode, on random tokens.

    python -m llm_sweep.bench model=tiny device=cpu
    python -m llm_sweep.bench model=wide3 batch=a100 device=cuda bench.modes=[eager-bf16,compile-bf16]
    python -m llm_sweep.bench --multirun optim=adamw,sophiag tracking=none

The same config groups as training. For each of bench.modes (eager|compile x fp32|bf16):
a fresh model and optimizer, bench.warmup_steps untimed steps (compilation happens here),
then bench.steps timed steps. Prints one table and writes bench.json and bench.md to the
run's output directory. No dataset and no tracking.

Started by `python -m llm_sweep.bench.packing` (LLM_SWEEP_BENCH_BARRIER set), it times each
mode together with the other trials packed on the device: see llm_sweep/bench/packing_barrier.py.
"""
from __future__ import annotations

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from llm_sweep.bench.results import format_report, write_results
from llm_sweep.bench.runner import run_bench
from llm_sweep.core import console
from llm_sweep.core.config import CONF_DIR, load_config, register_configs
from llm_sweep.core.console import user_errors
from llm_sweep.training.distributed import join_world, leave_world

register_configs()


@hydra.main(version_base=None, config_path=str(CONF_DIR), config_name="config")
@user_errors
def main(cfg: DictConfig) -> None:
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    run = load_config(cfg)
    world = join_world(run.distributed.timeout_s)  # under torchrun: the bench's process group
    try:
        result = run_bench(run, world)
    finally:
        leave_world()  # NCCL may hang at exit otherwise
    if not world.is_main:  # rank 0 reports for all
        return
    console.show(format_report(result), end="")
    json_path, md_path = write_results(result, out_dir)
    console.show(f"wrote {json_path} and {md_path}")

