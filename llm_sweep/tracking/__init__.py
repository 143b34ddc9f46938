"""Run tracking: `tracking=mlflow` (default) or `tracking=none`.

`start_tracking` returns a Tracker: its `sinks()` receive train()'s run description and
metrics, and `finish()` records how the run ended. MLflow (about 1 s to import) is loaded
only when a run is tracked with it.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Protocol

if TYPE_CHECKING:
    from llm_sweep.core.config import RunConfig
    from llm_sweep.tracking.describe import JobContext
    from llm_sweep.training.sinks import Sink


class Tracker(Protocol):
    def sinks(self) -> list[Sink]:
        """Sinks for train(): the run's description at the start, then its metrics."""

    def finish(self, status: str, summary: Optional[dict[str, Any]] = None,
               error: Optional[str] = None) -> None:
        """Record the outcome: FINISHED, FAILED (with `error`) or KILLED."""

    def where(self) -> Optional[str]:
        """How to open the run in the MLflow UI, None when it is not tracked."""


class NullTracker:
    """Tracks nothing (`tracking=none`)."""

    def sinks(self) -> list[Sink]:
        return []

    def where(self) -> Optional[str]:
        return None

    def finish(self, status: str, summary: Optional[dict[str, Any]] = None,
               error: Optional[str] = None) -> None:
        pass


def start_tracking(run: RunConfig, job: JobContext, run_dir: Path, config_hash: str) -> Tracker:
    """The tracker of one training run; never raises for an unreachable store."""
    if run.tracking.backend == "none":
        return NullTracker()
    from llm_sweep.tracking.mlflow_run import start_mlflow_run  # MLflow (1 s) only when tracked

    return start_mlflow_run(run, job, run_dir, config_hash)
