"""One parent MLflow run per sweep, from a Hydra callback in the launching process.

`on_multirun_start` runs once, before any job: it creates the parent run and writes
`<sweep dir>/mlflow_parent.json`. Every job reads that file (whatever launcher started
it, on whatever host) and logs its run as a child of the parent, in the same store.
`on_multirun_end` marks the best child and closes the parent. Registered in
conf/config.yaml under `hydra.callbacks`; with tracking=none it does nothing.

Hydra instantiates callbacks for every command, so this module stays light: MLflow is
imported only when a sweep is actually tracked.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

PARENT_FILE = "mlflow_parent.json"


@dataclass(frozen=True)
class SweepParent:
    """What a sweep's jobs need to log under its parent run."""

    tracking_uri: str  # absolute, resolved once by the launching process
    experiment_id: str
    experiment_name: str
    run_id: str
    shared_overrides: tuple[str, ...] = ()  # the sweep's command-line overrides, as given

    def write(self, sweep_dir: Path) -> None:
        sweep_dir.mkdir(parents=True, exist_ok=True)
        tmp = sweep_dir / f".{PARENT_FILE}.{os.getpid()}"
        # The URI may carry credentials: readable by the user running the sweep only.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(asdict(self), f, indent=2)
        tmp.replace(sweep_dir / PARENT_FILE)

    @classmethod
    def read(cls, sweep_dir: Path) -> Optional[SweepParent]:
        path = Path(sweep_dir) / PARENT_FILE
        if not path.exists():
            return None
        fields = json.loads(path.read_text())
        return cls(**{**fields, "shared_overrides": tuple(fields.get("shared_overrides", ()))})


def sweep_dir_of(config: DictConfig) -> Path:
    """The sweep directory, absolute as Hydra resolves it (against the start directory)."""
    return Path(config.hydra.runtime.cwd) / config.hydra.sweep.dir


def _tracked(config: DictConfig) -> bool:
    return config.get("tracking", {}).get("backend", "none") == "mlflow"


class MlflowSweepCallback(Callback):
    """Creates the sweep's parent run before the jobs and summarizes it after them."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if _tracked(config):
            from llm_sweep.tracking.sweep_run import start_parent_run

            start_parent_run(config)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if _tracked(config):
            from llm_sweep.tracking.sweep_run import finish_parent_run

            finish_parent_run(sweep_dir_of(config))
