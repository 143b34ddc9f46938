"""Hydra jobs submitted one at a time through a submitit launcher, as job handles.

hydra-submitit-launcher's `launch()` submits a batch and blocks until all of it ends. The
asynchronous sweeper needs a handle per job instead, so this builds the executor exactly
as `BaseSubmititLauncher.launch()` does (llm_sweep.sweeping.submitit_executor) and submits the launcher itself as the callable,
with the arguments `launch()` gives it. The job therefore runs the launcher's `__call__`
(the sweep config composed in the job, Hydra's `run_job`) and, on Slurm's pre-timeout or
preemption signal, its `checkpoint()`, which resubmits the same overrides and job number:
a requeued trial resumes in its own job directory and reports to the same Optuna trial.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, Dict, Hashable, Optional, Sequence

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra.plugins.launcher import Launcher
from hydra.utils import get_class
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import BaseSubmititLauncher
from omegaconf import DictConfig

from llm_sweep.sweeping.submitit_executor import executor_for

log = logging.getLogger(__name__)

POLL_S = {"local": 0.2, "slurm": 2.0}  # how often job states are read (Slurm's from the shared disk)


class JobEndedWithoutResult(RuntimeError):
    """The job's process ended without Hydra's result (killed, out of memory, node failure)."""


def submitit_jobs(launcher: Launcher, config: DictConfig) -> Optional[SubmititJobs]:
    """Job handles for a submitit launcher; None for a launcher that cannot give them."""
    if not isinstance(launcher, BaseSubmititLauncher) or getattr(launcher, "PACKS_TRIALS", False):
        return None
    return SubmititJobs(launcher, config)


def can_run_asynchronously(launcher_target: str) -> bool:
    """Whether the launcher that `hydra.launcher._target_` names gives a job handle per trial
    (not one that packs several trials into a job)."""
    try:
        launcher = get_class(launcher_target)
        return issubclass(launcher, BaseSubmititLauncher) and not getattr(launcher, "PACKS_TRIALS", False)
    except Exception:  # an unknown launcher: it runs in batches
        return False


class SubmititJobs:
    """Submits one Hydra job at a time and reports which jobs ended."""

    def __init__(self, launcher: Any, config: DictConfig) -> None:
        self.launcher = launcher
        self.kind: str = launcher._EXECUTOR
        self.executor = executor_for(launcher, config)

    def submit(self, overrides: Sequence[str], job_num: int) -> Any:
        """Start one job; returns its submitit handle."""
        log.info("\t#%d : %s", job_num, " ".join(filter_overrides(overrides)))
        return self.executor.submit(self.launcher, list(overrides), "hydra.sweep.dir", job_num,
                                    f"job_id_for_{job_num}", Singleton.get_state())

    def wait_any(self, jobs: Dict[Hashable, Any], check_interrupt: Callable[[], None]) -> list[Hashable]:
        """Block until at least one of `jobs` (handles by key) has ended; returns their keys.
        `check_interrupt` runs at each poll (it raises to stop waiting)."""
        while True:
            check_interrupt()
            ended = [key for key, job in jobs.items() if job.done()]
            if ended:
                return ended
            time.sleep(POLL_S.get(self.kind, 1.0))

    @staticmethod
    def has_result(job: Any) -> bool:
        """Whether the job has ended and left its result (no wait for a late result file)."""
        return job.paths.result_pickle.exists()

    @staticmethod
    def result(job: Any) -> JobReturn:
        """The job's JobReturn; a FAILED one when the process ended without it."""
        try:
            return job.results()[0]
        except Exception as error:
            lines = str(error).strip().splitlines() or [type(error).__name__]
            reason = JobEndedWithoutResult(f"job {job.job_id}: {lines[0]} (logs: {job.paths.stderr})")
            return JobReturn(status=JobStatus.FAILED, _return_value=reason)

    @staticmethod
    def cancel(job: Any) -> None:
        try:
            job.cancel(check=False)
        except Exception as error:  # a job that already ended, or scancel missing
            log.warning("Could not cancel job %s: %s", job.job_id, error)
