"""The local Slurm cluster runs submitit job arrays and requeues on the pre-timeout signal.

These are the two cluster behaviours the Slurm launcher presets rely on: a sweep is one
job array, and a job that gets USR2 before its time limit checkpoints, is requeued and
resumes from its own checkpoint (hydra-submitit-launcher resubmits the same overrides).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import submitit
from submitit.helpers import DelayedSubmission

from slurm_cluster import slurm_cluster, slurm_executor, wait_for_jobs, wait_for_output  # noqa: F401

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster")]

TARGET = 40
STEP_S = 0.2  # 7 s of counting after count=5, for the signal to find the job still counting
RESUMED_STEP_S = 0.01  # the requeued job need not leave time for anything: it finishes the count
# A limit under 10 minutes makes submitit count any USR2 as the pre-timeout signal: it
# grants min(0.8 x limit, limit - 10 min) of walltime before calling a signal a timeout.
TIMEOUT_MIN = 5


def describe_array_task(x: int) -> dict:
    env = submitit.JobEnvironment()
    return {"square": x * x, "job_id": env.job_id, "python": sys.executable,
            "array_task": os.environ["SLURM_ARRAY_TASK_ID"]}


class CountWithCheckpoint(submitit.helpers.Checkpointable):
    """Counts to `target`, one step per `step_s`, like a training loop.

    The count reaches disk only in `checkpoint()`, which submitit calls on the pre-timeout
    signal. The requeued job is a fresh instance that resumes from that file, as a Hydra
    job requeued by hydra-submitit-launcher resumes from its own checkpoint; nothing waits
    on it, so it counts at RESUMED_STEP_S.
    """

    def __init__(self, state_file: Path, target: int, step_s: float) -> None:
        self.state_file = state_file
        self.target = target
        self.step_s = step_s
        self.count = 0

    def __call__(self) -> dict:
        resumed_from = int(self.state_file.read_text()) if self.state_file.exists() else 0
        self.count = resumed_from
        while self.count < self.target:
            time.sleep(self.step_s)
            self.count += 1
            print(f"count={self.count}", flush=True)
        return {"resumed_from": resumed_from, "count": self.count,
                "restarts": int(os.environ.get("SLURM_RESTART_COUNT", "0"))}

    def checkpoint(self) -> DelayedSubmission:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(str(self.count))
        os.replace(tmp, self.state_file)
        return DelayedSubmission(CountWithCheckpoint(self.state_file, self.target, RESUMED_STEP_S))


def submit_and_signal(tmp_path: Path, max_num_timeout: int) -> submitit.Job:
    """Submit a counting job and send it USR2, as Slurm does `signal_delay_s` before the limit."""
    executor = slurm_executor(tmp_path / "jobs", max_num_timeout=max_num_timeout,
                              timeout_min=TIMEOUT_MIN)
    job = executor.submit(CountWithCheckpoint(tmp_path / "count.txt", TARGET, STEP_S))
    wait_for_output(job, "count=5")  # running, with submitit's signal handler installed
    subprocess.run(["scancel", "--signal=USR2", job.job_id], check=True, timeout=30)
    return job


def test_job_array_runs_every_task_with_the_submitting_python(tmp_path: Path) -> None:
    executor = slurm_executor(tmp_path, timeout_min=5)
    jobs = executor.map_array(describe_array_task, [3, 4])
    results = wait_for_jobs(jobs, timeout_s=60)

    array_id = jobs[0].job_id.split("_")[0]
    assert [r["square"] for r in results] == [9, 16]
    assert [r["array_task"] for r in results] == ["0", "1"]
    assert [r["job_id"] for r in results] == [f"{array_id}_0", f"{array_id}_1"]
    assert {r["python"] for r in results} == {sys.executable}


def test_pre_timeout_signal_checkpoints_requeues_and_resumes(tmp_path: Path) -> None:
    job = submit_and_signal(tmp_path, max_num_timeout=3)
    result = wait_for_jobs([job], timeout_s=90)[0]

    saved = int((tmp_path / "count.txt").read_text())
    assert 5 <= saved < TARGET
    assert result == {"resumed_from": saved, "count": TARGET, "restarts": 1}
    log = job.stdout() or ""  # submitit logs INFO to stdout; both runs append to it
    assert "Job has timed out" in log
    assert f"Requeued job {job.job_id} (2 remaining timeouts)" in log
    assert log.count("Starting with JobEnvironment") == 2


def test_pre_timeout_signal_ends_the_job_without_timeout_budget(tmp_path: Path) -> None:
    # hydra-submitit-launcher's default max_num_timeout=0: the presets must raise it.
    job = submit_and_signal(tmp_path, max_num_timeout=0)
    with pytest.raises(submitit.core.utils.UncompletedJobError, match="timed-out too many times"):
        wait_for_jobs([job], timeout_s=60)
    assert 5 <= int((tmp_path / "count.txt").read_text()) < TARGET
