"""The parent run of a sweep: its definition at the start, its best child at the end."""
from __future__ import annotations

import logging
import math
import re
import socket
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from omegaconf import DictConfig, OmegaConf

from llm_sweep.core.run_record import BEST_VAL_LOSS, FINAL_VAL_LOSS, MLFLOW_FINISHED, OPTUNA_RESULTS_FILE
from llm_sweep.tracking.describe import experiment_name, flatten_params, git_tags
from llm_sweep.tracking.parent import SweepParent, sweep_dir_of
from llm_sweep.tracking.redact import redact
from llm_sweep.tracking.store import connect, log_params, open_experiment, resolve_uri, with_retries

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

log = logging.getLogger(__name__)

_PARAM_KEY_CHARS = re.compile(r"[^\w\-. /:]")


def _override_params(overrides: list[str]) -> dict[str, str]:
    """`optim.lr=1e-3,2e-3` -> {"override.optim.lr": "1e-3,2e-3"} (MLflow-safe keys)."""
    params = {}
    for override in overrides:
        key, _, value = redact(override).partition("=")
        params[f"override.{_param_key(key)}"] = value
    return params


def _param_key(key: str) -> str:
    """An override's key as MLflow accepts it: `+shape` -> `shape`, `hydra/launcher` kept."""
    return _PARAM_KEY_CHARS.sub("_", key.lstrip("+~"))


def sweep_definition(config: DictConfig) -> dict[str, Any]:
    """The sweep as asked for: its overrides as typed, the sweeper's search space and settings."""
    hydra = config.hydra
    sweeper = OmegaConf.to_container(hydra.sweeper, resolve=False)  # as written, ${...} kept
    return {
        "sweep_dir": str(sweep_dir_of(config)),
        "sweeper": hydra.runtime.choices.get("hydra/sweeper"),
        "launcher": hydra.runtime.choices.get("hydra/launcher"),
        "overrides": list(hydra.overrides.task),
        "search_space": sweeper.pop("params", None) or {},
        "sweeper_config": {k: v for k, v in sweeper.items() if k != "_target_"},
    }


def start_parent_run(config: DictConfig) -> Optional[SweepParent]:
    """Create the parent run and write the file its jobs read; None if the store is down."""
    hydra = config.hydra
    cwd = Path(hydra.runtime.cwd)
    uri = resolve_uri(config.tracking.uri, cwd)
    sweep_name = hydra.runtime.choices.get("sweep")
    name = experiment_name(config.tracking.experiment, hydra.job.name, sweep_name, multirun=True)
    definition = sweep_definition(config)
    sweep_dir = sweep_dir_of(config)
    # A parent file left by an earlier sweep into this directory must not adopt these jobs.
    SweepParent.forget(sweep_dir)
    try:
        client, experiment_id = open_experiment(uri, name)
        tags = {"sweep_id": str(sweep_dir), "host": socket.gethostname(),
                "overrides": redact(" ".join(definition["overrides"])),
                **git_tags()}
        run_name = f"{sweep_name or 'sweep'}@{datetime.now():%Y-%m-%d_%H-%M-%S}"
        run_id = with_retries(lambda: client.create_run(
            experiment_id, run_name=run_name, tags=tags)).info.run_id
        params = {"sweeper": str(definition["sweeper"]), "launcher": str(definition["launcher"]),
                  **_override_params(definition["overrides"]),
                  **flatten_params({_param_key(str(key)): value for key, value in
                                    definition["search_space"].items()}, "search_space.")}
        log_params(client, run_id, params)
        client.log_text(run_id, redact(OmegaConf.to_yaml(definition)), "sweep.yaml")
    except Exception as exc:  # the sweep runs anyway; its jobs are tracked without a parent
        log.warning("MLflow: no parent run for this sweep at %s (%s)", redact(uri), redact(str(exc)))
        return None
    parent = SweepParent(uri, experiment_id, name, run_id, tuple(definition["overrides"]))
    parent.write(sweep_dir)
    log.info("MLflow: sweep parent run %s in experiment %r at %s", run_id, name, redact(uri))
    return parent


def _children(client: MlflowClient, parent: SweepParent) -> list[Run]:
    runs, token = [], None
    while True:
        page = client.search_runs([parent.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent.run_id}'",
                                  max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def best_child(children: list[Run]) -> Optional[Run]:
    """The FINISHED child with the lowest final validation loss."""
    finished = [r for r in children if r.info.status == MLFLOW_FINISHED
                and math.isfinite(r.data.metrics.get(FINAL_VAL_LOSS, math.nan))]
    return min(finished, key=lambda r: r.data.metrics[FINAL_VAL_LOSS], default=None)


def finish_parent_run(sweep_dir: Path) -> None:
    """Tag the best child, attach the sweeper's results, and mark the parent FINISHED."""
    parent = SweepParent.read(sweep_dir)
    if parent is None:
        return
    try:
        client = connect(parent.tracking_uri)
        children = _children(client, parent)
        best = best_child(children)
        client.log_metric(parent.run_id, "sweep/runs", len(children))
        client.log_metric(parent.run_id, "sweep/finished",
                          sum(r.info.status == MLFLOW_FINISHED for r in children))
        if best is not None:
            client.set_tag(parent.run_id, "best_run_id", best.info.run_id)
            client.set_tag(parent.run_id, "best_run_name", best.info.run_name)
            client.log_metric(parent.run_id, BEST_VAL_LOSS, best.data.metrics[FINAL_VAL_LOSS])
        for path in [sweep_dir / OPTUNA_RESULTS_FILE, *sorted(sweep_dir.glob("*.png"))]:
            if path.exists():
                client.log_artifact(parent.run_id, str(path))
        with_retries(lambda: client.set_terminated(parent.run_id, MLFLOW_FINISHED))
    except Exception as exc:
        log.warning("MLflow: could not close the sweep's parent run %s (%s)", parent.run_id,
                    redact(str(exc)))
