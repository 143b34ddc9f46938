"""`python -m llm_sweep.bench`: training throughput per mode, on random tokens.

    python -m llm_sweep.bench model=tiny device=cpu
    python -m llm_sweep.bench model=wide3 batch=a100 device=cuda bench.modes=[eager-bf16,compile-bf16]
    python -m llm_sweep.bench --multirun optim=adamw,sophiag tracking=none

The same config groups as training. For each of bench.modes (eager|compile x fp32|bf16):
a fresh model and optimizer, bench.warmup_steps untimed steps (compilation happens here),
then bench.steps timed steps. Prints one table and writes bench.json and bench.md to the
run's output directory. No dataset and no tracking.
"""
from __future__ import annotations

import os
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from llm_sweep.benchmarking import format_report, run_bench, write_results
from llm_sweep.cli import user_errors
from llm_sweep.config import CONF_DIR, load_config, register_configs

register_configs()


@hydra.main(version_base=None, config_path=str(CONF_DIR), config_name="config")
@user_errors
def main(cfg: DictConfig) -> None:
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    result = run_bench(load_config(cfg))
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, rank 0 reports for all
        return
    print(format_report(result), end="", flush=True)
    json_path, md_path = write_results(result, out_dir)
    print(f"wrote {json_path} and {md_path}")


if __name__ == "__main__":
    main()
