"""One MLflow run per training run: params and tags at the start, metrics from a
background thread while training, artifacts and the final status at the end.

Tracking never stops training: if the store cannot be reached at the start the run
goes on untracked, and whatever could not be logged is named in one warning at the end.
"""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

from omegaconf import DictConfig, OmegaConf

from llm_sweep.config import RunConfig
from llm_sweep.job import config_hash
from llm_sweep.tracking.callback import SweepParent
from llm_sweep.tracking.describe import (MAX_TAG_CHARS, JobContext, derived_params,
                                         experiment_name, flatten_params, run_name, run_tags)
from llm_sweep.tracking.loss_curve import plot_loss_curve
from llm_sweep.tracking.metric_queue import BackgroundMetricLogger, MetricValue
from llm_sweep.tracking.redact import redact
from llm_sweep.tracking.store import connect, log_params, open_experiment, resolve_uri, with_retries

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

FLUSH_TIMEOUT_S = 30.0  # the most finish() waits for queued metrics
HYDRA_FILES = ("config.yaml", "overrides.yaml")  # written by Hydra to <run_dir>/.hydra/


def start_mlflow_run(run: RunConfig, cfg: DictConfig, run_dir: Path) -> MlflowTracker | UntrackedRun:
    """Create the run (a child of the sweep's parent in a multirun) and log params and tags."""
    job = JobContext.current()
    parent = SweepParent.read(job.sweep_dir) if job.sweep_dir else None
    uri = parent.tracking_uri if parent else resolve_uri(run.tracking.uri, job.cwd)
    try:
        if parent:
            client, experiment_id = connect(uri), parent.experiment_id
        else:
            experiment = experiment_name(run.tracking.experiment, job.name, job.sweep_name,
                                         multirun=job.sweep_dir is not None)
            client, experiment_id = open_experiment(uri, experiment)
        tags = run_tags(run, job, config_hash(run))
        if parent:
            tags["mlflow.parentRunId"] = parent.run_id
        name = run_name(run, job.overrides, parent.shared_overrides if parent else ())
        run_id = with_retries(lambda: client.create_run(experiment_id, run_name=name, tags=tags)
                              ).info.run_id
    except Exception as exc:  # training goes on; finish() says what was not logged
        reason = f"MLflow at {redact(uri)} is unavailable: {_one_line(exc)}"
        log.warning("%s; training continues untracked", reason)
        return UntrackedRun(run, run_dir, reason)
    tracker = MlflowTracker(client, run_id, name, run, Path(run_dir))
    log.info("MLflow: run %r (%s) in experiment %s at %s", name, run_id, experiment_id, redact(uri))
    tracker.attempt("params", lambda: log_params(client, run_id, {
        **flatten_params(OmegaConf.to_container(cfg, resolve=True)), **derived_params(run)}))
    return tracker


def _one_line(exc: BaseException) -> str:
    """The error's first line, redacted: MLflow's messages quote the URI they called."""
    text = str(exc).strip().splitlines()
    return redact(f"{type(exc).__name__}: {text[0] if text else ''}")


def _artifact_files(run: RunConfig, run_dir: Path) -> list[tuple[Path, Optional[str]]]:
    """(file, artifact folder) of the files logged as they are."""
    files: list[tuple[Path, Optional[str]]] = [(run_dir / ".hydra" / name, None) for name in HYDRA_FILES]
    if run.tracking.log_checkpoint:
        files += [(path, "checkpoints") for path in sorted((run_dir / "checkpoints").glob("*.pt"))]
    return [(path, folder) for path, folder in files if path.exists()]


def _warn_not_logged(run_id: str, metric_values: int, failed: list[str]) -> None:
    if metric_values or failed:
        what = ([f"{metric_values} metric values"] if metric_values else []) + failed
        log.warning("MLflow run %s: not logged: %s", run_id, ", ".join(what))


class MlflowTracker:
    """A live MLflow run: `sinks()` feed train(), `finish()` records the outcome."""

    def __init__(self, client: "MlflowClient", run_id: str, name: str, run: RunConfig,
                 run_dir: Path):
        self.client = client
        self.run_id = run_id
        self.name = name
        self._run = run
        self._run_dir = run_dir
        self._failed: list[str] = []
        self._metrics = BackgroundMetricLogger(self._send_metrics)

    def sinks(self) -> list[BackgroundMetricLogger]:
        return [self._metrics]

    def _send_metrics(self, batch: list[MetricValue]) -> None:
        from mlflow.entities import Metric

        self.client.log_batch(self.run_id, metrics=[Metric(*value) for value in batch])

    def attempt(self, what: str, action: Callable[[], Any]) -> bool:
        """Run one logging action; on failure remember `what` for the final warning."""
        try:
            action()
            return True
        except Exception as exc:
            log.debug("MLflow: %s failed", what, exc_info=True)
            self._failed.append(f"{what} ({_one_line(exc)})")
            return False

    def finish(self, status: str, summary: Optional[dict[str, Any]] = None,
               error: Optional[str] = None) -> None:
        """Flush metrics, log the error, artifacts and loss curve, then set the status."""
        unsent = self._metrics.close(FLUSH_TIMEOUT_S)
        client, run_id = self.client, self.run_id
        if error:
            self.attempt("tag error", lambda: client.set_tag(run_id, "error",
                                                             redact(error)[:MAX_TAG_CHARS]))
        for path, folder in _artifact_files(self._run, self._run_dir):
            name = f"{folder}/{path.name}" if folder else path.name
            self.attempt(name, lambda: client.log_artifact(run_id, str(path), folder))
        if summary is not None:
            self.attempt("summary.json", lambda: client.log_dict(run_id, summary, "summary.json"))
        self.attempt("loss_curve.png", self._log_loss_curve)
        if not self.attempt(f"status {status}", lambda: with_retries(
                lambda: client.set_terminated(run_id, status))):
            self._failed[-1] += " (the run stays RUNNING)"
        _warn_not_logged(run_id, unsent, self._failed)

    def _log_loss_curve(self) -> None:
        metrics = self._run_dir / "metrics.jsonl"
        if not metrics.exists():
            return
        with tempfile.TemporaryDirectory() as tmp:
            png = Path(tmp) / "loss_curve.png"
            if plot_loss_curve(metrics, self._run.batch.tokens_per_step, png, title=self.name):
                self.client.log_artifact(self.run_id, str(png))


class UntrackedRun:
    """Stands in for a run the store could not create: counts what goes unlogged."""

    def __init__(self, run: RunConfig, run_dir: Path, reason: str):
        self._run = run
        self._run_dir = Path(run_dir)
        self.reason = reason
        self.metric_values = 0

    def sinks(self) -> list["UntrackedRun"]:
        return [self]

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.metric_values += len(metrics)

    def finish(self, status: str, summary: Optional[dict[str, Any]] = None,
               error: Optional[str] = None) -> None:
        artifacts = [path.name for path, _ in _artifact_files(self._run, self._run_dir)]
        artifacts += ["summary.json"] if summary is not None else []
        artifacts += ["loss_curve.png"] if (self._run_dir / "metrics.jsonl").exists() else []
        log.warning("%s; not logged: %d metric values, artifacts %s, status %s", self.reason,
                    self.metric_values, ", ".join(artifacts) or "none", status)
