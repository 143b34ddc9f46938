"""The file that ties a sweep's jobs to its parent MLflow run.

The launching process writes `<sweep dir>/mlflow_parent.json` before any job starts; every
job reads it (whatever launcher started it, on whatever host) and logs its run as a child
of the parent, in the same store.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from omegaconf import DictConfig

from llm_sweep.core.run_record import PARENT_FILE, read_json, write_json


@dataclass(frozen=True)
class SweepParent:
    """What a sweep's jobs need to log under its parent run."""

    tracking_uri: str  # absolute, resolved once by the launching process
    experiment_id: str
    experiment_name: str
    run_id: str
    shared_overrides: tuple[str, ...] = ()  # the sweep's command-line overrides, as given

    def write(self, sweep_dir: Path) -> None:
        # The URI may carry credentials: readable by the user running the sweep only.
        write_json(Path(sweep_dir) / PARENT_FILE, asdict(self), mode=0o600)

    @classmethod
    def read(cls, sweep_dir: Path) -> Optional[SweepParent]:
        fields = read_json(Path(sweep_dir) / PARENT_FILE)
        if fields is None:
            return None
        return cls(**{**fields, "shared_overrides": tuple(fields.get("shared_overrides", ()))})

    @staticmethod
    def forget(sweep_dir: Path) -> None:
        """Remove a parent file an earlier sweep into this directory left."""
        (Path(sweep_dir) / PARENT_FILE).unlink(missing_ok=True)


def sweep_dir_of(config: DictConfig) -> Path:
    """The sweep directory, absolute as Hydra resolves it (against the start directory)."""
    return Path(config.hydra.runtime.cwd) / config.hydra.sweep.dir
