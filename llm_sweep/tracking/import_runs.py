"""Runs trained without MLflow (`tracking=none`, e.g. on a GPU node that lacks it) logged
into an MLflow store afterwards, so `python -m llm_sweep.report` reads them like any run:

    python -m llm_sweep.tracking.import_runs isoflop_runs.tar.gz [--experiment NAME] [--tracking-uri URI]

The input is a folder or a .tar.gz holding run directories (each with `.hydra/config.yaml`
and what the run wrote: status.json, summary.json, metrics.jsonl). Each becomes one run
in the experiment its config names (`tracking.experiment`, else --experiment): the params
of a tracked run (the whole resolved config, model size and cost), every metric of
metrics.jsonl at its step, the summary, config and loss curve as artifacts, and the
status. A run directory already imported into that experiment (same folder name and
config hash) is skipped, so importing a bundle again adds only what is new.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import tarfile
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from mlflow.entities import Metric
from omegaconf import OmegaConf

from llm_sweep.core import console
from llm_sweep.core.config import RunConfig, load_config
from llm_sweep.core.console import user_errors
from llm_sweep.core.errors import DataError
from llm_sweep.core.run_record import (METRICS_FILE, MLFLOW_FAILED, MLFLOW_FINISHED, MLFLOW_KILLED,
                                       STATUS_FAILED, STATUS_FINISHED, STATUS_KILLED, STATUS_PRUNED,
                                       STATUS_RUNNING, SUMMARY_FILE, WORLD_SIZE, config_hash, read_json,
                                       read_status)
from llm_sweep.tracking.describe import MAX_TAG_CHARS, derived_params, flatten_params, run_name
from llm_sweep.tracking.loss_curve import plot_loss_curve
from llm_sweep.tracking.store import log_params, open_experiment, resolve_uri, with_retries

if TYPE_CHECKING:
    from mlflow import MlflowClient

CONFIG = Path(".hydra") / "config.yaml"
OVERRIDES = Path(".hydra") / "overrides.yaml"
IMPORTED_FROM = "imported_from"  # tag: the run directory's name
MAX_METRICS_PER_CALL = 1000  # MLflow's limit for one log_batch
# status.json -> MLflow; a run still "running" was killed before it could say so
MLFLOW_STATUS = {STATUS_FINISHED: MLFLOW_FINISHED, STATUS_FAILED: MLFLOW_FAILED, STATUS_KILLED: MLFLOW_KILLED,
                 STATUS_PRUNED: MLFLOW_KILLED, STATUS_RUNNING: MLFLOW_FAILED}


def run_dirs(root: Path) -> list[Path]:
    """Every run directory under `root` (one with .hydra/config.yaml), sorted by path."""
    return sorted(path.parent.parent for path in Path(root).rglob(str(CONFIG)))


def import_runs(root: Path, tracking_uri: Optional[str], experiment: Optional[str]) -> list[str]:
    """Log every run directory under `root`; returns the ids of the runs created."""
    dirs = run_dirs(root)
    if not dirs:
        raise DataError(f"{root} holds no run directories (folders with {CONFIG})")
    uri = resolve_uri(tracking_uri, Path.cwd())
    created, clients = [], {}
    for run_dir in dirs:
        run = load_config(OmegaConf.load(run_dir / CONFIG))
        name = experiment or run.tracking.experiment or "llm_sweep"
        if name not in clients:
            clients[name] = open_experiment(uri, name)
        client, experiment_id = clients[name]
        run_id = import_run_dir(client, experiment_id, run_dir, run)
        if run_id is not None:
            created.append(run_id)
    console.show(f"{len(created)} of {len(dirs)} run(s) imported into {', '.join(clients)} at {uri}")
    return created


def import_run_dir(client: MlflowClient, experiment_id: str, run_dir: Path,
                   run: RunConfig) -> Optional[str]:
    """One run directory as one MLflow run; None when it was imported before."""
    digest = config_hash(run)
    if _already_imported(client, experiment_id, run_dir.name, digest):
        console.show(f"{run_dir.name}: already imported, skipped")
        return None
    status = read_status(run_dir) or {"status": "running"}
    summary = read_json(run_dir / SUMMARY_FILE)
    given = run_dir / OVERRIDES
    overrides = [str(o) for o in OmegaConf.load(given)] if given.exists() else []
    tags = {IMPORTED_FROM: run_dir.name, "config_hash": digest,
            "overrides": " ".join(overrides)[:MAX_TAG_CHARS]}
    if summary:
        tags["device"] = str(summary.get("device", ""))
    if status.get("error") or status["status"] == "running":
        tags["error"] = status.get("error") or "the run ended without recording how (killed)"
    run_id = with_retries(lambda: client.create_run(
        experiment_id, run_name=run_name(run, overrides), tags=tags)).info.run_id
    log_params(client, run_id, {**flatten_params(dataclasses.asdict(run)), **derived_params(run),
                                WORLD_SIZE: "1"})
    metrics = _metrics(run_dir / METRICS_FILE)
    for start in range(0, len(metrics), MAX_METRICS_PER_CALL):
        chunk = metrics[start:start + MAX_METRICS_PER_CALL]
        with_retries(lambda: client.log_batch(run_id, metrics=chunk))
    _log_artifacts(client, run_id, run_dir, run, summary)
    with_retries(lambda: client.set_terminated(run_id, MLFLOW_STATUS.get(status["status"], MLFLOW_FAILED)))
    loss = f", val loss {summary['val_loss']:.4f}" if summary else ""
    console.show(f"{run_dir.name}: {status['status']}{loss} -> run {run_id}")
    return run_id


def _already_imported(client: MlflowClient, experiment_id: str, name: str, digest: str) -> bool:
    quoted = name.replace("'", "\\'")
    found = client.search_runs([experiment_id], f"tags.{IMPORTED_FROM} = '{quoted}' and "
                                                f"tags.config_hash = '{digest}'", max_results=1)
    return bool(found)


def _metrics(path: Path) -> list[Metric]:
    """Every value of metrics.jsonl at its step (one timestamp: the records carry none)."""
    if not path.exists():
        return []
    now = int(time.time() * 1000)
    values = []
    for line_no, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise DataError(f"{path}:{line_no} is not a JSON record") from None
        step = int(record.pop("step"))
        values += [Metric(key, float(value), now, step) for key, value in record.items()]
    return values


def _log_artifacts(client: MlflowClient, run_id: str, run_dir: Path, run: RunConfig,
                   summary: Optional[dict]) -> None:
    for path in (run_dir / CONFIG, run_dir / OVERRIDES):
        if path.exists():
            with_retries(lambda: client.log_artifact(run_id, str(path)))
    if summary is not None:
        with_retries(lambda: client.log_dict(run_id, summary, SUMMARY_FILE))
    with tempfile.TemporaryDirectory() as tmp:
        png = Path(tmp) / "loss_curve.png"
        if (run_dir / METRICS_FILE).exists() and plot_loss_curve(
                run_dir / METRICS_FILE, run.batch.tokens_per_step, png, title=run_dir.name):
            with_retries(lambda: client.log_artifact(run_id, str(png)))


def _unpacked(source: Path, scratch: Path) -> Path:
    """A folder of run directories: `source` itself, or a .tar.gz unpacked into `scratch`."""
    if source.is_dir():
        return source
    if not source.is_file() or not tarfile.is_tarfile(source):
        raise DataError(f"{source} is neither a folder nor a tar archive of run directories")
    with tarfile.open(source) as archive:
        archive.extractall(scratch, filter="data")
    return scratch


@user_errors
def main(argv: Optional[list[str]] = None) -> None:
    console.configure_logging()
    parser = argparse.ArgumentParser(prog="python -m llm_sweep.tracking.import_runs",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="a folder or .tar.gz of run directories")
    parser.add_argument("--experiment", help="default: each run's tracking.experiment")
    parser.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db "
                                               "in the current directory")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        import_runs(_unpacked(args.source, Path(scratch)), args.tracking_uri, args.experiment)


if __name__ == "__main__":
    main()
