"""The local Slurm cluster of the tests (.ci/slurm_up.sh): detect it, submit to it, wait on it.

Tests that need it request the `slurm_cluster` fixture: they skip where no cluster runs
(a laptop) and fail in CI, which sets LLM_SWEEP_REQUIRE_SLURM=1 after starting one.
Waits are bounded and a failure message carries the job's logs, since a job that dies
before writing its result is otherwise invisible (accounting is off, so `sacct` cannot
tell submitit what happened).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import pytest
import submitit

TESTS_DIR = Path(__file__).resolve().parent
REQUIRE_ENV = "LLM_SWEEP_REQUIRE_SLURM"
SERVING_STATES = {"idle", "mix", "alloc"}
# States after which a job runs no more; REQUEUED and PREEMPTED jobs come back.
FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
                "BOOT_FAIL", "DEADLINE"}
POLL_S = 0.5


def slurm_available() -> bool:
    """True when `sinfo` answers and some node takes jobs (idle, mixed or allocated)."""
    if shutil.which("sinfo") is None:
        return False
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True,
                             timeout=15)
    except subprocess.TimeoutExpired:
        return False
    return out.returncode == 0 and bool(SERVING_STATES & set(out.stdout.split()))


def require_slurm() -> None:
    """Skip the calling test without a cluster, or fail it when CI requires one."""
    if slurm_available():
        return
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{REQUIRE_ENV}=1 but no Slurm node takes jobs (sinfo); "
                    "start the local cluster with `bash .ci/slurm_up.sh` as root", pytrace=False)
    pytest.skip("no Slurm cluster: run .ci/slurm_up.sh as root to start a local one")


@pytest.fixture(scope="session")
def slurm_cluster() -> None:
    """A Slurm cluster that takes jobs, or a skip (a failure under LLM_SWEEP_REQUIRE_SLURM=1)."""
    require_slurm()


def slurm_executor(folder: Path, max_num_timeout: int = 3, **parameters: Any) -> submitit.AutoExecutor:
    """A submitit executor on the default partition whose jobs can import the test modules.

    pytest imports test modules from tests/ as top-level modules, and a job unpickles its
    callable by module name, so the job's Python path starts with tests/ too.
    """
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm",
                                     slurm_max_num_timeout=max_num_timeout)
    setup = [f"export PYTHONPATH={TESTS_DIR}${{PYTHONPATH:+:$PYTHONPATH}}"]
    executor.update_parameters(slurm_setup=setup, **parameters)
    return executor


def job_state(job_id: str) -> Optional[str]:
    """Slurm's state of a job (RUNNING, COMPLETED, ...), or None once Slurm forgot it."""
    out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True,
                         text=True, timeout=15)
    for field in out.stdout.split():
        if field.startswith("JobState="):
            return field.split("=", 1)[1]
    return None


def job_logs(job: submitit.Job, tail_chars: int = 4000) -> str:
    """The end of a job's stdout and stderr, for failure messages."""
    parts = []
    for name, text in (("stdout", job.stdout()), ("stderr", job.stderr())):
        parts.append(f"----- job {job.job_id} {name}\n{(text or '(none)')[-tail_chars:]}")
    return "\n".join(parts)


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str,
               jobs: Sequence[submitit.Job] = ()) -> None:
    """Poll `condition` until true; after `timeout_s`, fail naming `what` with the jobs' logs."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            states = ", ".join(f"{job.job_id}: {job_state(job.job_id)}" for job in jobs)
            logs = "\n".join(job_logs(job) for job in jobs)
            pytest.fail(f"timed out after {timeout_s:.0f}s waiting for {what} "
                        f"(Slurm states: {states or 'n/a'})\n{logs}", pytrace=False)
        time.sleep(POLL_S)


def wait_for_output(job: submitit.Job, text: str, timeout_s: float = 60) -> None:
    """Wait until the job's stdout contains `text`."""
    wait_until(lambda: text in (job.stdout() or ""), timeout_s,
               f"job {job.job_id} to print {text!r}", [job])


def wait_for_jobs(jobs: Sequence[submitit.Job], timeout_s: float = 120) -> list[Any]:
    """Wait for every job to finish and return their results.

    A job that Slurm reports as finished without a result file failed outside Python
    (killed, cancelled, out of time): fail at once with its logs instead of waiting.
    """
    def finished() -> bool:
        for job in jobs:
            if job.done():
                continue
            state = job_state(job.job_id)
            if state in FINAL_STATES and not job.done():
                pytest.fail(f"job {job.job_id} ended as {state} without a result\n{job_logs(job)}",
                            pytrace=False)
            return False
        return True

    wait_until(finished, timeout_s, f"jobs {[job.job_id for job in jobs]} to finish", jobs)
    return [job.result() for job in jobs]
