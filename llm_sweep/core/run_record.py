"""What a run leaves behind: file names, status values (its own and MLflow's), the config hash,
metric and param names.

The job writes these files, the tracker and the sweep callbacks read them, the report
and the Optuna sweeper rely on the names. This module is the one place that defines
them; it imports only the core's disk helper, so every layer can use it.

A run directory holds:
    status.json      how the job ended (STATUS_*), its config hash, final metrics or error
    summary.json     the training summary (train() writes it)
    metrics.jsonl    every metric record, one JSON object per line
    mlflow_run.json  the MLflow run a resumed job continues
    checkpoints/     step_XXXXXXX.pt
A sweep directory holds one run directory per job, plus:
    mlflow_parent.json         the parent run the jobs log under
    sweep_results.md           the jobs table
    optimization_results.yaml  the Optuna sweeper's best trial and counts
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from functools import partial
from pathlib import Path
from typing import Any, Optional

from llm_sweep.core.disk import writing

# --- files ---------------------------------------------------------------------------
STATUS_FILE = "status.json"
# A job refused its folder (another config finished there): its own record, beside the
# other run's status.json, which it must not overwrite.
REFUSED_FILE = "refused.json"
SUMMARY_FILE = "summary.json"
METRICS_FILE = "metrics.jsonl"
MLFLOW_RUN_FILE = "mlflow_run.json"
CHECKPOINT_DIR = "checkpoints"
PARENT_FILE = "mlflow_parent.json"
SWEEP_RESULTS_FILE = "sweep_results.md"
OPTUNA_RESULTS_FILE = "optimization_results.yaml"

# --- status values, in status.json ------------------------------------------------------
STATUS_RUNNING = "running"
STATUS_FINISHED = "finished"
STATUS_FAILED = "failed"
STATUS_PRUNED = "pruned"
STATUS_KILLED = "killed"
STATUSES = (STATUS_RUNNING, STATUS_FINISHED, STATUS_FAILED, STATUS_PRUNED, STATUS_KILLED)

# --- MLflow's run statuses: how a tracked run ended, as the tracker records it and the
# sweep's parent, the importer and the report read it --------------------------------------
MLFLOW_FINISHED = "FINISHED"
MLFLOW_FAILED = "FAILED"
MLFLOW_KILLED = "KILLED"

# --- metric names (MLflow keys and metrics.jsonl fields) ----------------------------------
TRAIN_LOSS = "train/loss"
VAL_LOSS = "val/loss"
VAL_PPL = "val/ppl"
VAL_ACC = "val/acc"
LR = "lr"
TOKENS_PER_S = "perf/tokens_per_s"
MFU = "perf/mfu"
STEP_MS = "perf/step_ms"
PEAK_MEM_GB = "perf/peak_mem_gb"  # the largest of any process: CUDA allocated, else peak RSS
TOKENS = "progress/tokens"
TOKENS_PER_PARAM = "progress/tokens_per_param"
ELAPSED_S = "progress/elapsed_s"
WIN_RATE = "optim/win_rate"
FINAL_VAL_LOSS = "final/val_loss"
FINAL_VAL_PPL = "final/val_ppl"
FINAL_VAL_ACC = "final/val_acc"
FINAL_TOKENS = "final/tokens"
FINAL_TOKENS_PER_PARAM = "final/tokens_per_param"
FINAL_FLOPS = "final/flops"  # training FLOPs spent: flops_per_token x tokens, as MFU counts them
BEST_VAL_LOSS = "best/val_loss"  # on a sweep's parent run

# --- param names beyond the flattened config ------------------------------------------------
PARAMS = "model.params"
NON_EMBEDDING_PARAMS = "model.non_embedding_params"
FLOPS_PER_TOKEN = "flops_per_token"
TOKENS_PER_STEP = "tokens_per_step"
WORLD_SIZE = "world_size"  # processes of a data-parallel run


def config_hash(config: Any) -> str:
    """A stable id of a config dataclass: everything that determines a run's result."""
    blob = json.dumps(dataclasses.asdict(config), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def write_json(path: Path, data: dict[str, Any], mode: int = 0o644) -> None:
    """Write `data` as JSON atomically: readers see the old file or the new one, never half.
    A full disk is DiskFull, the temporary file removed and the old file left as it was."""
    path = Path(path)
    text = json.dumps(data, indent=2) + "\n"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with writing(path, len(text.encode()), undo=partial(tmp.unlink, missing_ok=True)):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w") as file:
            file.write(text)
        os.replace(tmp, path)


def read_json(path: Path) -> Optional[dict[str, Any]]:
    """The JSON object in `path`; None when the file is missing, unreadable or not an object."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_status(run_dir: Path, status: str, **fields: Any) -> None:
    """Record how a job stands: one of STATUSES, plus fields such as config_hash, val_loss, error."""
    if status not in STATUSES:
        raise ValueError(f"status {status!r} is not one of {', '.join(STATUSES)}")
    write_json(Path(run_dir) / STATUS_FILE, {"status": status, **fields})


def read_status(run_dir: Path) -> Optional[dict[str, Any]]:
    """The job's status.json, or None when it wrote none (or it cannot be read)."""
    status = read_json(Path(run_dir) / STATUS_FILE)
    return status if status is not None and "status" in status else None

