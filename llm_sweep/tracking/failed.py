"""A sweep's job that failed before its MLflow run started (a bad override, a crash while
setting up) is still recorded: a FAILED child of the sweep's parent with the error."""
from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from llm_sweep.core.run_record import MLFLOW_FAILED
from llm_sweep.tracking.describe import MAX_TAG_CHARS, JobContext
from llm_sweep.tracking.parent import SweepParent
from llm_sweep.tracking.redact import redact
from llm_sweep.tracking.store import connect, with_retries

log = logging.getLogger(__name__)


def record_failed_job(cfg: DictConfig, run_dir: Path, error: str) -> None:
    """Create the job's run as FAILED under its sweep's parent; never raises."""
    if OmegaConf.select(cfg, "tracking.backend", default="mlflow") != "mlflow":
        return
    job = JobContext.current()
    parent = SweepParent.read(job.sweep_dir) if job.sweep_dir else None
    if parent is None:
        return
    try:
        client = connect(parent.tracking_uri)
        varying = [o for o in job.overrides if o not in parent.shared_overrides]
        name = redact("-".join(["failed", *varying]))[:200]
        tags = {"mlflow.parentRunId": parent.run_id, "error": redact(error)[:MAX_TAG_CHARS],
                "overrides": redact(" ".join(job.overrides))[:MAX_TAG_CHARS],
                "sweep_id": str(job.sweep_dir), "job_index": str(job.job_num)}
        run_id = with_retries(lambda: client.create_run(parent.experiment_id, run_name=name,
                                                        tags=tags)).info.run_id
        with_retries(lambda: client.set_terminated(run_id, MLFLOW_FAILED))
    except Exception as exc:  # the status file still records the failure
        log.warning("MLflow: could not record failed job %s (%s)", run_dir, redact(str(exc)))
