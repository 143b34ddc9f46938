"""One MLflow run per training run: params and tags at the start, metrics from a
background thread while training, artifacts and the final status at the end. A job that
resumes from its checkpoint (a requeued Slurm job) continues the same MLflow run.

Tracking never stops training: if the store cannot be reached at the start the run
goes on untracked, and whatever could not be logged is named in one warning at the end.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional
from urllib.parse import urlparse
from urllib.request import url2pathname

from mlflow.entities import Metric
from mlflow.exceptions import MlflowException

from llm_sweep.core.config import RunConfig
from llm_sweep.core.disk import disk_full, no_space
from llm_sweep.core.run_record import (METRICS_FILE, MLFLOW_RUN_FILE, SUMMARY_FILE, WORLD_SIZE,
                                       read_json, write_json)
from llm_sweep.tracking.describe import (MAX_TAG_CHARS, JobContext, derived_params, experiment_name,
                                         flatten_params, run_name, run_tags)
from llm_sweep.tracking.loss_curve import plot_loss_curve
from llm_sweep.tracking.metric_queue import BackgroundMetricLogger, MetricValue
from llm_sweep.tracking.parent import SweepParent
from llm_sweep.tracking.redact import redact
from llm_sweep.tracking.store import (connect, log_params, open_experiment, resolve_uri, set_tags,
                                      runs_page, sqlite_path, with_retries)
from llm_sweep.tracking.system_metrics import SystemMetrics
from llm_sweep.training.checkpoint import list_checkpoints
from llm_sweep.training.sinks import RunInfo, Sink

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

FLUSH_TIMEOUT_S = 30.0  # the most finish() waits for queued metrics
LOCAL_UI = "http://127.0.0.1:5000"  # where `mlflow ui` serves by default
HYDRA_FILES = ("config.yaml", "overrides.yaml")  # written by Hydra to <run_dir>/.hydra/


def start_mlflow_run(run: RunConfig, job: JobContext, run_dir: Path,
                     digest: str) -> MlflowTracker | UntrackedRun:
    """Create the run (a child of the sweep's parent in a multirun), or continue the one a
    resumed job started, and log its params and tags."""
    parent = SweepParent.read(job.sweep_dir) if job.sweep_dir else None
    uri = parent.tracking_uri if parent else resolve_uri(run.tracking.uri, job.cwd)
    name = run_name(run, job.overrides, parent.shared_overrides if parent else ())
    try:
        if parent:
            client, experiment_id = connect(uri), parent.experiment_id
        else:
            experiment = experiment_name(run.tracking.experiment, job.name, job.sweep_name,
                                         multirun=job.sweep_dir is not None)
            client, experiment_id = open_experiment(uri, experiment)
        tags = run_tags(run, job, digest)
        if parent:
            tags["mlflow.parentRunId"] = parent.run_id
        run_id = _continued_run(client, run, run_dir, uri, digest, tags)
        if run_id is None:
            run_id = with_retries(lambda: client.create_run(
                experiment_id, run_name=name, tags=tags)).info.run_id
    except Exception as exc:  # training goes on; finish() says what was not logged
        reason = f"MLflow at {redact(uri)} is unavailable: {_one_line(exc)}"
        log.warning("%s; training continues untracked", reason)
        return UntrackedRun(run, run_dir, reason)
    write_json(Path(run_dir) / MLFLOW_RUN_FILE,
               {"run_id": run_id, "tracking_uri": redact(uri), "config_hash": digest})
    tracker = MlflowTracker(client, run_id, name, run, Path(run_dir), uri, experiment_id)
    log.info("MLflow: run %r (%s) in experiment %s at %s", name, run_id, experiment_id, redact(uri))
    # Identical values may be logged again, so a continued run needs no special case.
    tracker.attempt("params", lambda: log_params(client, run_id, {
        **flatten_params(dataclasses.asdict(run)), **derived_params(run)}))
    return tracker


def _continued_run(client: MlflowClient, run: RunConfig, run_dir: Path, uri: str, digest: str,
                   tags: dict[str, str]) -> Optional[str]:
    """The run recorded in the run dir, RUNNING again with fresh tags, when this job resumes
    from its checkpoint (a preempted job requeued) with the same config and store."""
    saved = read_json(Path(run_dir) / MLFLOW_RUN_FILE)
    if run.resume != "auto" or saved is None or not list_checkpoints(run_dir):
        return None
    if (saved.get("config_hash"), saved.get("tracking_uri")) != (digest, redact(uri)):
        return None
    run_id = saved["run_id"]
    try:
        previous = client.get_run(run_id)
    except MlflowException:  # deleted from the store: start a new run
        return None
    if "error" in previous.data.tags:
        client.delete_tag(run_id, "error")
    set_tags(client, run_id, tags)
    with_retries(lambda: client.update_run(run_id, status="RUNNING"))
    return run_id


def _one_line(exc: BaseException) -> str:
    """The error's first line, redacted: MLflow's messages quote the URI they called."""
    text = str(exc).strip().splitlines()
    return redact(f"{type(exc).__name__}: {text[0] if text else ''}")


def _artifact_files(run: RunConfig, run_dir: Path) -> list[tuple[Path, Optional[str]]]:
    """(file, artifact folder) of the files logged as they are."""
    files: list[tuple[Path, Optional[str]]] = [(run_dir / ".hydra" / name, None) for name in HYDRA_FILES]
    if run.tracking.log_checkpoint:
        files += [(path, "checkpoints") for path in list_checkpoints(run_dir)]
    return [(path, folder) for path, folder in files if path.exists()]


class MlflowTracker(Sink):
    """A live MLflow run: a sink of train(), metrics sent from a background thread;
    `finish()` records the outcome."""

    def __init__(self, client: MlflowClient, run_id: str, name: str, run: RunConfig,
                 run_dir: Path, uri: str, experiment_id: str = "0"):
        self.client = client
        self.run_id = run_id
        self.name = name
        self.experiment_id = experiment_id
        self._run = run
        self._run_dir = run_dir
        self._uri = uri
        self._system: Optional[SystemMetrics] = None
        self._failed: list[str] = []  # what could not be logged, for the final warning
        self._first_error: Optional[str] = None
        self._metrics = BackgroundMetricLogger(self._send_metrics)

    def sinks(self) -> list[Sink]:
        return [self]

    def where(self) -> str:
        """The command that serves this run's store, or the server's address, and the run's name."""
        if sqlite_path(self._uri) is not None or self._uri.startswith("file:"):
            served, server = f"mlflow ui --backend-store-uri {self._uri}, then open ", LOCAL_UI
        else:
            served, server = "open ", redact(self._uri)
        return f"{served}{runs_page(server, self.experiment_id)} (run {self.name!r})"

    def start(self, info: RunInfo) -> None:
        """Tag where training runs, as the training setup resolved it, and start sampling
        the system's metrics (tracking.system_metrics)."""
        tags = {"device": info.device, "dtype": info.dtype, "compiled": str(info.compiled).lower()}
        self.attempt("tags", lambda: set_tags(self.client, self.run_id,
                                              {k: redact(v)[:MAX_TAG_CHARS] for k, v in tags.items()}))
        self.attempt("params", lambda: log_params(self.client, self.run_id,
                                                  {WORLD_SIZE: str(info.world_size)}))
        if self._run.tracking.system_metrics and self._system is None:
            self._system = SystemMetrics(self.run_id, self._uri)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self._metrics.log_metrics(metrics, step)

    def _send_metrics(self, batch: list[MetricValue]) -> None:
        self.client.log_batch(self.run_id, metrics=[Metric(*value) for value in batch])

    def attempt(self, what: str, action: Callable[[], Any]) -> bool:
        """Run one logging action; on failure remember `what` for the final warning."""
        try:
            action()
            return True
        except Exception as exc:
            log.debug("MLflow: %s failed", what, exc_info=True)
            self._failed.append(what)
            self._first_error = self._first_error or _one_line(exc)
            return False

    def finish(self, status: str, summary: Optional[dict[str, Any]] = None,
               error: Optional[str] = None) -> None:
        """Flush metrics, log the error, artifacts and loss curve, then set the status."""
        unsent = self._metrics.close(FLUSH_TIMEOUT_S)
        if self._system is not None:
            self.attempt("system metrics", self._system.stop)
        client, run_id = self.client, self.run_id
        if error:
            self.attempt("tag error", lambda: client.set_tag(run_id, "error",
                                                             redact(error)[:MAX_TAG_CHARS]))
        for path, folder in _artifact_files(self._run, self._run_dir):
            name = f"{folder}/{path.name}" if folder else path.name
            self.attempt(name, lambda: self._log_file(path, folder))
        if summary is not None:
            self.attempt(SUMMARY_FILE, lambda: self._log_summary(summary))
        self.attempt("loss_curve.png", self._log_loss_curve)
        if not self.attempt(f"status {status}", lambda: with_retries(
                lambda: client.set_terminated(run_id, status))):
            self._failed[-1] += " (the run stays RUNNING)"
        self._warn_not_logged(unsent)

    def _warn_not_logged(self, metric_values: int) -> None:
        if not metric_values and not self._failed:
            return
        what = ([f"{metric_values} metric values"] if metric_values else []) + self._failed
        last = self._metrics.last_error
        error = self._first_error or (_one_line(last) if last else "timed out sending metrics")
        log.warning("MLflow run %s: not logged: %s; first error: %s", self.run_id,
                    ", ".join(what), error)

    def _log_loss_curve(self) -> None:
        metrics = self._run_dir / METRICS_FILE
        if not metrics.exists():
            return
        with tempfile.TemporaryDirectory() as tmp:
            png = Path(tmp) / "loss_curve.png"
            if plot_loss_curve(metrics, self._run.batch.tokens_per_step, png, title=self.name):
                self._log_file(png)

    def _log_file(self, path: Path, folder: Optional[str] = None) -> None:
        with self._store_space(f"{folder}/{path.name}" if folder else path.name, path.stat().st_size):
            self.client.log_artifact(self.run_id, str(path), folder)

    def _log_summary(self, summary: dict[str, Any]) -> None:
        with self._store_space(SUMMARY_FILE, len(json.dumps(summary, indent=2))):
            self.client.log_dict(self.run_id, summary, SUMMARY_FILE)

    @contextmanager
    def _store_space(self, name: str, size: int) -> Iterator[None]:
        """Log artifact `name` of `size` bytes: a full disk under a local artifact store is
        DiskFull, one line naming where it was going (MLflow removes its own staging file).
        Not logged, it is named in finish()'s warning: the run's outcome stands."""
        try:
            yield
        except Exception as exc:
            cause = no_space(exc)
            folder = self._local_artifact_folder() if cause is not None else None
            if folder is None:
                raise
            raise disk_full(folder / name, size, cause) from exc

    def _local_artifact_folder(self) -> Optional[Path]:
        """The run's artifact folder when the store keeps it on a local disk, else None."""
        location = urlparse(self.client.get_run(self.run_id).info.artifact_uri)
        return Path(url2pathname(location.path)) if location.scheme in ("", "file") else None


class UntrackedRun(Sink):
    """Stands in for a run the store could not create: counts what goes unlogged."""

    def __init__(self, run: RunConfig, run_dir: Path, reason: str):
        self._run = run
        self._run_dir = Path(run_dir)
        self.reason = reason
        self.metric_values = 0

    def sinks(self) -> list[Sink]:
        return [self]

    def where(self) -> None:
        return None

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.metric_values += len(metrics)

    def finish(self, status: str, summary: Optional[dict[str, Any]] = None,
               error: Optional[str] = None) -> None:
        artifacts = [path.name for path, _ in _artifact_files(self._run, self._run_dir)]
        artifacts += [SUMMARY_FILE] if summary is not None else []
        artifacts += ["loss_curve.png"] if (self._run_dir / METRICS_FILE).exists() else []
        log.warning("%s; not logged: %d metric values, artifacts %s, status %s", self.reason,
                    self.metric_values, ", ".join(artifacts) or "none", status)
