"""The real app on the local Slurm cluster: a 2-job sweep, and a preempted job that resumes."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import TINY, run_app
from slurm_cluster import slurm_cluster  # noqa: F401

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.usefixtures("slurm_cluster")]
# Jobs that still train, evaluate and record, at the least cost: 2 steps, one final batch.
CHEAP = [o for o in TINY if not o.startswith(("budget.steps", "eval.final_batches"))] + [
    "budget.steps=2", "eval.final_batches=1"]


def status(job_dir: Path) -> dict:
    return json.loads((job_dir / "status.json").read_text())


def test_slurm_launcher_runs_a_two_job_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_app(["--multirun", "hydra/launcher=slurm_cpu", *CHEAP, "model.n_embd=64,128",
                      f"hydra.sweep.dir={sweep}"], cwd=tmp_path, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2/2 jobs finished" in result.stdout
    widths = {json.loads((sweep / n / "summary.json").read_text())["non_embedding_params"]
              for n in ("0", "1")}
    assert len(widths) == 2
    assert all(status(sweep / n)["status"] == "finished" for n in ("0", "1"))


def _slurm_job_of(sweep: Path, job_num: str) -> str:
    """The Slurm id of sweep job `job_num` (array task), from submitit's log folder."""
    for folder in (sweep / ".submitit").iterdir():
        if folder.name.endswith(f"_{job_num}"):
            return folder.name
    raise AssertionError(f"no submitit folder for job {job_num} in {sweep / '.submitit'}")


def _steps_logged(job_dir: Path) -> int:
    path = job_dir / "metrics.jsonl"
    if not path.exists():
        return 0
    return max((json.loads(line)["step"] for line in path.read_text().splitlines()), default=0)


def test_preempted_job_checkpoints_requeues_and_matches_an_uninterrupted_run(tmp_path):
    sweep = tmp_path / "sweep"
    # Two identical trainings (the run name differs only): job 1 is preempted, job 0 is not.
    # 150 steps: the signal sent at step 8 reaches a job still training on a loaded machine.
    args = ["--multirun", "hydra/launcher=slurm_cpu", *TINY, "budget.steps=150",
            "batch.micro_batch_size=16", "batch.seq_len=64", "tracking.log_interval=1",
            "tracking.run_name=whole,preempted", f"hydra.sweep.dir={sweep}"]
    sweep_process = subprocess.Popen(
        [sys.executable, "-m", "llm_sweep", *args], cwd=tmp_path, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 240
        while _steps_logged(sweep / "1") < 8:
            assert time.monotonic() < deadline, "job 1 never reached step 8"
            assert sweep_process.poll() is None, sweep_process.stdout.read()
            time.sleep(0.5)
        subprocess.run(["scancel", "--signal=USR2", _slurm_job_of(sweep, "1")], check=True)
        output, _ = sweep_process.communicate(timeout=400)
    finally:
        if sweep_process.poll() is None:
            sweep_process.kill()
    assert sweep_process.returncode == 0, output[-4000:]
    assert "2/2 jobs finished" in output
    log = "".join(p.read_text() for p in (sweep / ".submitit").glob("*_1/*.err"))
    assert "Requeued" in log or "requeue" in log.lower(), log[-3000:]
    whole, preempted = (json.loads((sweep / n / "summary.json").read_text()) for n in ("0", "1"))
    assert preempted["steps"] == whole["steps"] == 150
    assert preempted["val_loss"] == whole["val_loss"]
    losses = [{r["step"]: r["train/loss"] for r in map(json.loads, (sweep / n / "metrics.jsonl")
                                                        .read_text().splitlines()) if "train/loss" in r}
              for n in ("0", "1")]
    assert losses[1] == losses[0]  # every step's loss, before and after the requeue
