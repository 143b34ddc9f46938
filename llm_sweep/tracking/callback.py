"""One parent MLflow run per sweep, from a Hydra callback in the launching process.

`on_multirun_start` runs once, before any job: it creates the parent run and writes the
parent file its jobs read (tracking/parent.py). `on_multirun_end` marks the best child and
closes the parent. Registered in conf/config.yaml under `hydra.callbacks`; with
tracking=none it does nothing.

Hydra instantiates callbacks for every command, so this module stays light: MLflow is
imported only when a sweep is actually tracked.
"""
from __future__ import annotations

from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from llm_sweep.tracking.parent import sweep_dir_of


def _tracked(config: DictConfig) -> bool:
    return config.get("tracking", {}).get("backend", "none") == "mlflow"


class MlflowSweepCallback(Callback):
    """Creates the sweep's parent run before the jobs and summarizes it after them."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if _tracked(config):
            # MLflow (1 s) only when tracked
            from llm_sweep.tracking.sweep_run import start_parent_run

            start_parent_run(config)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if _tracked(config):
            # MLflow (1 s) only when tracked
            from llm_sweep.tracking.sweep_run import finish_parent_run

            finish_parent_run(sweep_dir_of(config))
