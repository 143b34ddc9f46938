"""Training runs read from MLflow into flat rows (report/rows.py): config, size, speed, final
metrics and the validation-loss curve."""
from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np
from mlflow.exceptions import MlflowException

from llm_sweep.core import console
from llm_sweep.core.budget import NULLS, Budget
from llm_sweep.core.config import LR_PARAM
from llm_sweep.core.errors import ConfigError, DataError
from llm_sweep.core.model_config import SP
from llm_sweep.core.run_record import (ELAPSED_S, FINAL_FLOPS, FINAL_TOKENS, FINAL_TOKENS_PER_PARAM,
                                       FINAL_VAL_ACC, FINAL_VAL_LOSS, FINAL_VAL_PPL,
                                       FLOPS_PER_TOKEN, MFU, NON_EMBEDDING_PARAMS, PARAMS, TOKENS,
                                       TOKENS_PER_PARAM, TOKENS_PER_S, TOKENS_PER_STEP, VAL_LOSS)
from llm_sweep.report.rows import (ARCH, BASE_DEPTH, BASE_TUNED_BY, BASE_WIDTH, HEAD_DIM, MODEL_NAME, N_EMBD, N_HEAD,
                                   N_LAYER, OPTIMIZER, PARAMETRIZATION, REQUIRED_PARAMS, SEED, RunRow,
                                   ValPoint, config_key)
from llm_sweep.tracking.store import connect, resolve_uri, sqlite_path

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

PAGE_SIZE = 1000


def open_client(tracking_uri: Optional[str], cwd: Path) -> tuple["MlflowClient", str]:
    """A client on an existing store; a missing SQLite file is an error, never created."""
    uri = resolve_uri(tracking_uri, cwd)
    db = sqlite_path(uri)
    if db is not None and not db.exists():
        raise DataError(f"no MLflow store at {db}: pass --tracking-uri or set MLFLOW_TRACKING_URI")
    return connect(uri), uri


def fetch_runs(client: "MlflowClient", experiments: Sequence[str] = (), parent: Optional[str] = None,
               filter_string: str = "") -> list[RunRow]:
    """The training runs of the named experiments (or of the parent's) matching every
    condition given. Runs without model-size params (e.g. sweep parents) are not training
    runs; a training run without a param a row needs (logged by another tool, or by an
    older version) is left out, and one line on stderr says how many and why."""
    experiment_ids = [_experiment_id(client, name) for name in experiments]
    conditions = [filter_string.strip()] if filter_string.strip() else []
    if parent:
        if not experiment_ids:
            experiment_ids = [_parent_run(client, parent).info.experiment_id]
        conditions.append(f"tags.mlflow.parentRunId = '{parent}'")
    if not experiment_ids:
        raise ConfigError("select runs with --experiment NAME and/or --parent RUN_ID")
    names = {eid: client.get_experiment(eid).name for eid in experiment_ids}
    rows: list[RunRow] = []
    left_out: list[list[str]] = []  # the missing params of each run left out
    token = None
    while True:
        page = client.search_runs(experiment_ids, " and ".join(conditions),
                                  max_results=PAGE_SIZE, page_token=token)
        for run in page:
            if PARAMS not in run.data.params:
                continue  # not a training run: a sweep's parent, a failed job's record
            missing = [key for key in REQUIRED_PARAMS if key not in run.data.params]
            if missing:
                left_out.append(missing)
                continue
            rows.append(_row(client, run, names[run.info.experiment_id]))
        token = page.token
        if not token:
            break
    if left_out:
        keys = sorted({key for missing in left_out for key in missing})
        console.warn(f"left out {len(left_out)} run(s) without {', '.join(keys)} (logged by another "
                     "tool or an older version)")
    return rows


def _experiment_id(client: "MlflowClient", name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        known = ", ".join(e.name for e in client.search_experiments()) or "none"
        raise ConfigError(f"--experiment {name!r} does not exist; experiments: {known}")
    return experiment.experiment_id


def _parent_run(client: "MlflowClient", run_id: str) -> "Run":
    try:
        return client.get_run(run_id)
    except MlflowException as exc:
        raise ConfigError(f"--parent {run_id!r} is not a run in this store") from exc


def _row(client: "MlflowClient", run: "Run", experiment: str) -> RunRow:
    params, metrics, run_id = run.data.params, run.data.metrics, run.info.run_id
    n_embd, n_head, seed = int(params[N_EMBD]), params[N_HEAD], params[SEED]
    budget = Budget.from_params(params)
    return RunRow(
        run_id=run_id, name=run.info.run_name or run_id[:8], experiment=experiment,
        status=run.info.status, preset=params[MODEL_NAME], arch=params[ARCH],
        n_layer=int(params[N_LAYER]), n_embd=n_embd,
        n_head=n_embd // int(params[HEAD_DIM]) if n_head in NULLS else int(n_head),
        params=int(params[PARAMS]), non_embedding_params=int(params[NON_EMBEDDING_PARAMS]),
        optimizer=params[OPTIMIZER], lr=float(params[LR_PARAM]),
        budget=budget.label(), seed=None if seed in NULLS else int(seed),
        # A run that did not finish shows what it had seen when it stopped.
        tokens=metrics.get(FINAL_TOKENS, metrics.get(TOKENS)),
        tokens_per_param=metrics.get(FINAL_TOKENS_PER_PARAM, metrics.get(TOKENS_PER_PARAM)),
        tokens_per_s=_median_history(client, run_id, TOKENS_PER_S),
        mfu=_median_history(client, run_id, MFU),
        val_loss=metrics.get(FINAL_VAL_LOSS), val_ppl=metrics.get(FINAL_VAL_PPL),
        val_acc=metrics.get(FINAL_VAL_ACC),
        flops_budget=budget.cfg.flops,
        flops=metrics.get(FINAL_FLOPS, _spent_flops(params, metrics)),
        parametrization=params.get(PARAMETRIZATION, SP),
        base_width=_optional_int(params.get(BASE_WIDTH, "None")),
        base_depth=_optional_int(params.get(BASE_DEPTH, "None")),
        base_tuned_by=None if params.get(BASE_TUNED_BY, "None") in NULLS else params[BASE_TUNED_BY],
        curve=_val_curve(client, run_id, int(params[TOKENS_PER_STEP])),
        config_key=config_key(params),
    )


def _optional_float(value: str) -> Optional[float]:
    return None if value in NULLS else float(value)


def _optional_int(value: str) -> Optional[int]:
    return None if value in NULLS else int(value)


def _spent_flops(params: dict[str, str], metrics: dict[str, float]) -> Optional[float]:
    """For runs logged before final/flops existed: the same count from the logged rate."""
    per_token = _optional_float(params.get(FLOPS_PER_TOKEN, "None"))
    tokens = metrics.get(FINAL_TOKENS)
    return None if per_token is None or tokens is None else per_token * tokens


def _median_history(client: "MlflowClient", run_id: str, key: str) -> Optional[float]:
    """Robust to the first window (compile warm-up on CUDA) and to a short last one."""
    values = [m.value for m in client.get_metric_history(run_id, key)]
    return statistics.median(values) if values else None


def _val_curve(client: "MlflowClient", run_id: str, tokens_per_step: int) -> tuple[ValPoint, ...]:
    """val/loss per step with the tokens seen by then (a fixed number per step) and the
    wall-clock time interpolated from the progress/elapsed_s logged every log_interval
    steps (evaluations can fall in between)."""
    losses = {m.step: m.value for m in client.get_metric_history(run_id, VAL_LOSS)}
    if not losses:
        return ()
    steps = sorted(losses)
    logged = sorted((m.step, m.value) for m in client.get_metric_history(run_id, ELAPSED_S))
    if logged:
        # (0, 0) anchors evaluations before the first log; past the last log, the last value.
        xs, ys = zip(*([(0, 0.0)] + logged))
        elapsed = [float(s) for s in np.interp(steps, xs, ys)]
    else:
        elapsed = [math.nan] * len(steps)
    return tuple(ValPoint(step, float(step * tokens_per_step), seconds, losses[step])
                 for step, seconds in zip(steps, elapsed))
