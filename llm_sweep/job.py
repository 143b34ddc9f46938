"""One Hydra job: validate the config, track the run, train, and record how it ended.

Every job writes `status.json` in its run directory (running, then finished, failed,
pruned or killed), which sweeps read to build their results table and to skip jobs
that already finished with the same config.
"""
from __future__ import annotations

import hashlib
import json
import sys
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from llm_sweep.config import RunConfig, load_config
from llm_sweep.errors import ConfigError, LlmSweepError
from llm_sweep.sweeping.preemption import preemption_guard
from llm_sweep.sweeping.pruning import OptunaPruningReporter
from llm_sweep.tracking import start_tracking
from llm_sweep.train import RunInterrupted, train

STATUS_FILE = "status.json"


def config_hash(run: RunConfig) -> str:
    """A stable id of everything that determines a run's result."""
    blob = json.dumps(asdict(run), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def read_status(run_dir: Path) -> Optional[dict[str, Any]]:
    path = Path(run_dir) / STATUS_FILE
    return json.loads(path.read_text()) if path.exists() else None


def write_status(run_dir: Path, status: str, **fields: Any) -> None:
    path = Path(run_dir) / STATUS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"status": status, **fields}, indent=2) + "\n")
    tmp.replace(path)


def run_job(cfg: DictConfig) -> Optional[float]:
    """The Hydra task: returns the final validation loss (what sweepers minimize)."""
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    try:
        run = load_config(cfg)
    except LlmSweepError as exc:
        return _failed(run_dir, exc, multirun, fail_fast=False)

    digest = config_hash(run)
    previous = read_status(run_dir)
    if previous and previous["status"] == "finished" and previous.get("config_hash") == digest:
        print(f"already finished in {run_dir} (val/loss {previous['val_loss']:.4f}); skipping")
        return previous["val_loss"]
    if previous and previous.get("config_hash") not in (None, digest):
        return _failed(run_dir, ConfigError(
            f"{run_dir} holds a run with a different config ({previous['config_hash']}, now "
            f"{digest}); choose a new hydra.run.dir / hydra.sweep.dir"), multirun, False, None,
            keep_status=True)
    write_status(run_dir, "running", config_hash=digest)
    tracker = start_tracking(run, cfg, run_dir)
    sinks = [*tracker.sinks(), *pruning_sinks()]
    try:
        with preemption_guard() as guard:
            try:
                summary = train(run, run_dir, sinks=sinks)
            except RunInterrupted as exc:
                tracker.finish("KILLED", error=str(exc))
                write_status(run_dir, "killed", config_hash=digest, error=str(exc))
                guard.hand_over()  # under submitit: requeue and exit here
                raise
    except KeyboardInterrupt:
        tracker.finish("KILLED", error="interrupted")
        write_status(run_dir, "killed", config_hash=digest, error="interrupted")
        raise
    except RunInterrupted:
        raise
    except Exception as exc:  # recorded, then reported per run mode
        if _is_pruned(exc):
            tracker.finish("KILLED", error="pruned")
            write_status(run_dir, "pruned", config_hash=digest)
            return float("nan")
        tracker.finish("FAILED", error=f"{type(exc).__name__}: {exc}")
        return _failed(run_dir, exc, multirun, run.sweep.fail_fast, digest)
    tracker.finish("FINISHED", summary=summary)
    write_status(run_dir, "finished", config_hash=digest, val_loss=summary["val_loss"],
                 val_ppl=summary["val_ppl"], val_acc=summary["val_acc"])
    return summary["val_loss"]


def pruning_sinks() -> list:
    """The Optuna pruning reporter when this job is a trial of the Optuna sweeper."""
    reporter = OptunaPruningReporter.from_env()
    return [reporter] if reporter is not None else []


def _is_pruned(exc: BaseException) -> bool:
    return type(exc).__name__ == "TrialPruned"


def _failed(run_dir: Path, exc: Exception, multirun: bool, fail_fast: bool,
            digest: Optional[str] = None, keep_status: bool = False) -> float:
    """Record a failure. A single run exits 2 with one line (a traceback for real bugs);
    a sweep job returns NaN so the other jobs go on, unless sweep.fail_fast is set."""
    message = str(exc) if isinstance(exc, LlmSweepError) else f"{type(exc).__name__}: {exc}"
    if not keep_status:
        write_status(run_dir, "failed", config_hash=digest, error=message)
    if multirun and not fail_fast:
        print(f"error: {message}", file=sys.stderr)
        if not isinstance(exc, LlmSweepError):
            traceback.print_exc()
        return float("nan")
    if isinstance(exc, LlmSweepError):
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
    raise exc
