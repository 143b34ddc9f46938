"""The launcher presets in conf/hydra/launcher compose with the project config and fit its budget."""
from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig

from llm_sweep.core.budget import parse_duration
from llm_sweep.core.config import CONF_DIR, register_configs

register_configs()

SLURM = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
LOCAL = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"


def compose_with_hydra(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=True)


@pytest.mark.parametrize("preset, expected", [
    ("slurm_a100", {"_target_": SLURM, "partition": None, "gpus_per_node": 1, "tasks_per_node": 1,
                    "cpus_per_task": 8, "mem_gb": 64, "timeout_min": 240, "signal_delay_s": 120,
                    "max_num_timeout": 3, "array_parallelism": 8}),
    ("slurm_cpu", {"_target_": SLURM, "partition": None, "gpus_per_node": None, "tasks_per_node": 1,
                   "cpus_per_task": 1, "mem_gb": 2, "timeout_min": 30, "signal_delay_s": 30,
                   "max_num_timeout": 3, "array_parallelism": 16}),
    ("local_parallel", {"_target_": LOCAL, "gpus_per_node": 0, "tasks_per_node": 1,  # no GPU here
                        "timeout_min": 240}),
    ("slurm_node8", {"_target_": SLURM, "nodes": 1, "tasks_per_node": 8, "gpus_per_node": 8,
                     "timeout_min": 240, "signal_delay_s": 120, "max_num_timeout": 3}),
])
def test_preset_sets_the_launcher(preset: str, expected: dict) -> None:
    launcher = compose_with_hydra(f"hydra/launcher={preset}").hydra.launcher
    assert {key: launcher[key] for key in expected} == expected


def test_a100_preset_outlasts_the_3h_budget_before_its_requeue_signal() -> None:
    cfg = compose_with_hydra("hydra/launcher=slurm_a100", "budget=3h")
    signal_at_s = cfg.hydra.launcher.timeout_min * 60 - cfg.hydra.launcher.signal_delay_s
    assert signal_at_s - parse_duration(cfg.budget.time) == 58 * 60  # eval and compile margin


def test_partition_is_set_on_the_command_line_and_typos_fail() -> None:
    launcher = compose_with_hydra("hydra/launcher=slurm_a100", "hydra.launcher.partition=gpu").hydra.launcher
    assert launcher.partition == "gpu"
    with pytest.raises(ConfigCompositionException, match="partiton"):
        compose_with_hydra("hydra/launcher=slurm_a100", "hydra.launcher.partiton=gpu")
