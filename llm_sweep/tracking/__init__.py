"""Run tracking: `tracking=mlflow` (default) or `tracking=none`.

`start_tracking` returns a Tracker: its `sinks()` receive train()'s metrics and
`finish()` records how the run ended. MLflow (about 1 s to import) is loaded only when
a run is tracked with it.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Protocol

if TYPE_CHECKING:  # importing the config pulls in torch; the sweep callback does without
    from omegaconf import DictConfig

    from llm_sweep.config import RunConfig


class Tracker(Protocol):
    def sinks(self) -> list:
        """Metric sinks for train(): objects with `log_metrics(metrics, step)`."""

    def finish(self, status: str, summary: Optional[dict[str, Any]] = None,
               error: Optional[str] = None) -> None:
        """Record the outcome: FINISHED, FAILED (with `error`) or KILLED."""


class NullTracker:
    """Tracks nothing (`tracking=none`)."""

    def sinks(self) -> list:
        return []

    def finish(self, status: str, summary: Optional[dict[str, Any]] = None,
               error: Optional[str] = None) -> None:
        pass


def start_tracking(run: RunConfig, cfg: DictConfig, run_dir: Path) -> Tracker:
    """The tracker of one training run; never raises for an unreachable store."""
    if run.tracking.backend == "none":
        return NullTracker()
    from llm_sweep.tracking.mlflow_run import start_mlflow_run

    return start_mlflow_run(run, cfg, run_dir)
