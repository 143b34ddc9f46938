"""Where runs are recorded: the tracking URI, a bounded reachability check, the
experiment, and retries for the transient errors of a store shared by many jobs.

SQLite: many jobs starting at once on a fresh file race in MLflow's schema migration,
so each process opens the store and gets or creates its experiment under a file lock
next to the database; after that, writers share the file through SQLite's busy
timeout plus `with_retries` for the rare write that waits longer.
"""
from __future__ import annotations

import contextlib
import logging
import os
import random
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable, Iterator, Optional, TypeVar

from filelock import FileLock
from mlflow import MlflowClient
from mlflow.entities import Param, RunTag
from mlflow.exceptions import MlflowException

from llm_sweep.core.run_record import FINAL_VAL_LOSS

DEFAULT_URI = "sqlite:///mlflow.db"
SQLITE_PREFIX = "sqlite:///"
PROBE_TIMEOUT_S = 5.0
LOCK_TIMEOUT_S = 300.0
MAX_PARAMS_PER_CALL = 100  # MLflow's log_batch limit on params, and on tags
# MLflow retries a failing HTTP call 7 times with a 120 s timeout each: minutes of
# waiting per call when a server is down. A training job would rather drop a metric.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}

T = TypeVar("T")

MLFLOW_LOGGER = "mlflow"
# MLflow 3's UI opens an experiment on its GenAI traces view unless its kind says it holds
# model training runs; the note is the experiment's description in the UI.
EXPERIMENT_TAGS = {
    "mlflow.experimentKind": "custom_model_development",
    "mlflow.note.content": ("Training runs of llm_sweep. Sort by final/val_loss (the run's last "
                            "validation loss); a sweep's parent run holds its jobs."),
}


class TrackingUnavailable(RuntimeError):
    """The tracking store cannot be reached or opened."""


def resolve_uri(configured: Optional[str], base_dir: Path) -> str:
    """The tracking URI with a relative SQLite path made absolute against `base_dir`.

    tracking.uri, else $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db. Absolute, so jobs
    whose working directory differs (submitit, Slurm) write to the same database.
    """
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI
    if not uri.startswith(SQLITE_PREFIX):
        return uri
    path, query = _split_sqlite(uri)
    if not path.is_absolute():
        path = Path(base_dir) / path
    return f"{SQLITE_PREFIX}{path.resolve()}{query}"


def _split_sqlite(uri: str) -> tuple[Path, str]:
    rest = uri[len(SQLITE_PREFIX):]
    path, sep, query = rest.partition("?")
    return Path(path).expanduser(), sep + query


def sqlite_path(uri: str) -> Optional[Path]:
    """The database file of a resolved sqlite:/// URI, else None."""
    return _split_sqlite(uri)[0] if uri.startswith(SQLITE_PREFIX) else None


def probe(uri: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Fail within `timeout_s` if an HTTP tracking server does not answer /health, and
    bound how long MLflow's own HTTP calls may wait (unless set in the environment)."""
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme not in ("http", "https"):
        return
    for name, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)
    host = parts.netloc.rpartition("@")[2]  # credentials are for the API, not /health
    health = urllib.parse.urlunsplit((parts.scheme, host, parts.path.rstrip("/") + "/health", "", ""))
    try:
        with urllib.request.urlopen(health, timeout=timeout_s):
            pass
    except urllib.error.HTTPError:
        return  # it answered (a proxy may guard /health with auth)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, ssl.SSLError):
            return  # it answered; TLS settings are MLflow's (MLFLOW_TRACKING_SERVER_CERT_PATH)
        raise TrackingUnavailable(f"no answer from {health}: {reason}") from exc


def is_transient(exc: BaseException) -> bool:
    """A locked SQLite database or a store that asks to try again later."""
    text = str(exc)
    return ("database is locked" in text or "OperationalError" in type(exc).__name__
            or getattr(exc, "error_code", None) == "TEMPORARILY_UNAVAILABLE")


def with_retries(action: Callable[[], T], attempts: int = 6, first_delay_s: float = 0.5) -> T:
    """`action()`, retried with jittered exponential backoff while it fails transiently."""
    delay = first_delay_s
    for _ in range(attempts - 1):
        try:
            return action()
        except Exception as exc:
            if not is_transient(exc):
                raise
        time.sleep(delay * random.uniform(1.0, 1.5))
        delay *= 2
    return action()


@contextlib.contextmanager
def _opening(uri: str) -> Iterator[None]:
    """Probe a server; for a SQLite file, hold the lock next to it."""
    probe(uri)
    db = sqlite_path(uri)
    if db is None:
        yield
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    # Import MLflow's SQL store before taking the lock: the seconds its import takes
    # would otherwise be spent holding the lock, one job after another.
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401

    with FileLock(f"{db}.lock", timeout=LOCK_TIMEOUT_S):
        yield


def _client(uri: str) -> MlflowClient:
    route_mlflow_logs()
    return with_retries(lambda: MlflowClient(tracking_uri=uri))  # opens (creates, migrates) the store


def route_mlflow_logs() -> None:
    """MLflow's INFO lines (system metrics starting and stopping, a store being created) off
    the console, which shows its warnings only, and into the log file where one is kept (a
    Hydra job's `<job>.log`): MLflow's logger has a console handler of its own and does not
    pass its records on."""
    logger = logging.getLogger(MLFLOW_LOGGER)
    for handler in logger.handlers:
        if not isinstance(handler, logging.FileHandler):
            handler.setLevel(logging.WARNING)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler) and handler not in logger.handlers:
            logger.addHandler(handler)


def connect(uri: str) -> MlflowClient:
    """A client on an existing store (a sweep's, opened once by its launcher)."""
    with _opening(uri):
        return _client(uri)


def open_experiment(uri: str, name: str) -> tuple[MlflowClient, str]:
    """A client on `uri` and the id of experiment `name`, created if needed."""
    db = sqlite_path(uri)
    # Artifacts beside a SQLite file, not in ./mlruns (which MLflow would later mistake
    # for a file store) nor relative to whichever directory a job happens to run in.
    artifacts = (db.parent / "mlartifacts").as_uri() if db else None
    with _opening(uri):
        client = _client(uri)
        experiment = with_retries(lambda: client.get_experiment_by_name(name))
        if experiment is None:
            try:
                return client, with_retries(lambda: client.create_experiment(name, artifacts, EXPERIMENT_TAGS))
            except MlflowException as exc:  # created meanwhile by a job on a server
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                experiment = client.get_experiment_by_name(name)
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        for key, value in EXPERIMENT_TAGS.items():  # an experiment created by another tool
            if key not in experiment.tags:
                client.set_experiment_tag(experiment.experiment_id, key, value)
        return client, experiment.experiment_id


def runs_page(server: str, experiment_id: str) -> str:
    """The UI's address of an experiment's runs, best final validation loss first."""
    return (f"{server.rstrip('/')}/#/experiments/{experiment_id}/runs?"
            f"orderByKey={urllib.parse.quote(f'metrics.`{FINAL_VAL_LOSS}`', safe='')}&orderByAsc=true")


def log_params(client: MlflowClient, run_id: str, params: dict[str, str]) -> None:
    """Log params in as few calls as MLflow's per-call limit allows."""
    _log_in_batches(client, run_id, "params", [Param(k, v) for k, v in params.items()])


def set_tags(client: MlflowClient, run_id: str, tags: dict[str, str]) -> None:
    _log_in_batches(client, run_id, "tags", [RunTag(k, v) for k, v in tags.items()])


def _log_in_batches(client: MlflowClient, run_id: str, kind: str, entities: list) -> None:
    for start in range(0, len(entities), MAX_PARAMS_PER_CALL):
        chunk = entities[start:start + MAX_PARAMS_PER_CALL]
        with_retries(lambda: client.log_batch(run_id, **{kind: chunk}))
