"""One run over several processes (DDP on Gloo, real processes): the same result as one
process, one writer, resumable on another world size, and every rank stopping together."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from conftest import DDP_TINY, run_app
from slurm_cluster import slurm_cluster  # noqa: F401

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_ranks(args: list[str], cwd: Path, world_size: int = 2, env: dict | None = None,
                per_rank: dict[int, dict] | None = None) -> list[subprocess.Popen]:
    """The app as `world_size` processes joined through torch's env:// rendezvous."""
    port, procs = free_port(), []
    for rank in range(world_size):
        rank_env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                    "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world_size),
                    "OMP_NUM_THREADS": "1", **(env or {}), **(per_rank or {}).get(rank, {})}
        procs.append(subprocess.Popen([sys.executable, "-m", "llm_sweep", *args], cwd=cwd,
                                      env=rank_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    return procs


def finish(procs: list[subprocess.Popen], timeout: float = 240) -> list[tuple[int, str, str]]:
    """(exit code, stdout, stderr) of each process, once it ends."""
    outputs = [p.communicate(timeout=timeout) for p in procs]
    return [(p.returncode, out, err) for p, (out, err) in zip(procs, outputs)]


def records(run_dir: Path) -> list[dict]:
    """The metrics.jsonl records written so far (a line still being written is not one yet)."""
    lines = (run_dir / "metrics.jsonl").read_text().split("\n")
    return [json.loads(line) for line in lines[:-1] if line]


def losses(run_dir: Path) -> dict[int, float]:
    return {r["step"]: r["train/loss"] for r in records(run_dir) if "train/loss" in r}


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def wait_for(path: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.2)


def test_torchrun_two_ranks_equal_one_process_with_one_writer(tmp_path, one_process_run):
    tracked = [o for o in DDP_TINY if not o.startswith("tracking=")]
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc_per_node=2", "-m", "llm_sweep", *tracked], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "TMPDIR": str(scratch)})
    assert two.returncode == 0, two.stderr[-3000:]
    (run_dir,) = (tmp_path / "outputs").glob("*/*")  # one run directory, rank 0's
    assert sorted(p.name for p in run_dir.iterdir()) == [
        ".hydra", "checkpoints", "llm_sweep.log", "metrics.jsonl", "mlflow_run.json",
        "status.json", "summary.json"]
    assert losses(run_dir)[1] == pytest.approx(losses(one_process_run)[1], abs=1e-5)
    assert summary(run_dir)["val_loss"] == pytest.approx(summary(one_process_run)["val_loss"], abs=2e-3)
    assert summary(run_dir)["tokens"] == summary(one_process_run)["tokens"]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    (experiment,) = [e for e in client.search_experiments() if e.name == "llm_sweep"]
    (mlflow_run,) = client.search_runs([experiment.experiment_id])
    assert mlflow_run.data.params["world_size"] == "2"
    assert "perf/peak_mem_gb" in mlflow_run.data.metrics
    assert list(scratch.glob("llm_sweep-rank*")) == []  # rank 1 kept no Hydra folder of its own


def test_a_signal_to_one_rank_checkpoints_once_and_the_run_resumes_on_one_process(tmp_path):
    args = [*DDP_TINY, "budget.steps=40", "checkpoint.interval=0"]
    whole = run_app([*args, "hydra.run.dir=whole"], cwd=tmp_path)  # the uninterrupted run, on one process
    assert whole.returncode == 0, whole.stderr[-3000:]
    split = start_ranks([*args, "hydra.run.dir=split"], tmp_path)
    wait_for(tmp_path / "split" / "metrics.jsonl")
    deadline = time.monotonic() + 240  # a wait on a state, not a speed limit
    while len(records(tmp_path / "split")) < 5:  # a few steps in: both ranks are training
        assert time.monotonic() < deadline and all(p.poll() is None for p in split), "no 5 steps"
        time.sleep(0.1)
    split[1].send_signal(signal.SIGUSR2)  # preemption reaches rank 1 only
    results = finish(split)
    said = "\n".join(f"rank {rank}: exit {code}\n{err[-1500:]}" for rank, (code, _, err) in enumerate(results))
    assert all(code != 0 for code, _, _ in results), said  # both stopped: interrupted, not finished
    assert (tmp_path / "split" / "checkpoints").is_dir(), said
    (checkpoint,) = (tmp_path / "split" / "checkpoints").iterdir()  # written once, by rank 0
    stopped_at = int(checkpoint.stem.split("_")[1])
    assert 5 <= stopped_at < 40
    status = json.loads((tmp_path / "split" / "status.json").read_text())
    assert status["status"] == "killed"
    resumed = run_app([*args, "hydra.run.dir=split"], cwd=tmp_path)  # one process now
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed at step {stopped_at}" in resumed.stdout
    whole, after = losses(tmp_path / "whole"), losses(tmp_path / "split")
    for step in range(stopped_at + 1, 41):
        assert after[step] == pytest.approx(whole[step], abs=1e-4)


def test_ranks_of_different_speed_stop_at_the_same_step_under_a_time_budget(tmp_path):
    args = [*[o for o in DDP_TINY if not o.startswith("budget.")], "budget.time=4s",
            "distributed.timeout=30s", "hydra.run.dir=run"]
    slow = {1: {"OMP_NUM_THREADS": "1"}, 0: {"OMP_NUM_THREADS": "2"}}
    results = finish(start_ranks(args, tmp_path, per_rank=slow), timeout=180)
    assert [code for code, _, _ in results] == [0, 0], results[0][2][-2000:] + results[1][2][-2000:]
    assert summary(tmp_path / "run")["binding_budget"] == "time"


def test_a_rank_killed_makes_the_others_exit_with_one_clear_error_within_the_timeout(tmp_path):
    args = [*DDP_TINY, "budget.steps=100000", "distributed.timeout=20s", "hydra.run.dir=run"]
    procs = start_ranks(args, tmp_path)
    wait_for(tmp_path / "run" / "metrics.jsonl")
    procs[1].send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    code, _, err = finish(procs[:1], timeout=60)[0]
    assert code == 1 and time.monotonic() - killed_at < 20 + 10
    (error,) = [line for line in err.splitlines() if "error:" in line]
    assert "another process of this run failed or stopped answering" in error
    assert "Traceback" not in err
    assert json.loads((tmp_path / "run" / "status.json").read_text())["status"] == "failed"
    procs[1].wait()


@pytest.mark.slurm
@pytest.mark.usefixtures("slurm_cluster")
def test_a_two_task_slurm_job_trains_one_ddp_run(tmp_path, one_process_run):
    done = run_app(["--multirun", "hydra/launcher=slurm_cpu", "hydra.launcher.tasks_per_node=2",
                    *DDP_TINY, "hydra.sweep.dir=sweep"], cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = tmp_path / "sweep" / "0"
    assert losses(run_dir)[1] == pytest.approx(losses(one_process_run)[1], abs=1e-5)
    assert summary(run_dir)["val_loss"] == pytest.approx(summary(one_process_run)["val_loss"], abs=2e-3)
    logs = "".join(path.read_text() for path in (tmp_path / "sweep" / ".submitit").rglob("*_0_log.out"))
    assert "2 processes (DDP)" in logs  # rank 0's start line: the job trained over two tasks


def test_ctrl_c_under_torchrun_stops_every_rank_and_prints_the_torchrun_that_resumes(tmp_path):
    """A terminal's Ctrl-C reaches torchrun and every rank (one process group); torchrun then
    signals the ranks again. The stop stays the user's: one checkpoint, the run killed, one
    line from rank 0 with the torchrun command that resumes it, no trace from llm_sweep."""
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    args = [*DDP_TINY, "budget.steps=40", "hydra.run.dir=run"]
    with open(tmp_path / "out.txt", "w") as out, open(tmp_path / "err.txt", "w") as err:
        group = subprocess.Popen([*torchrun, "-m", "llm_sweep", *args], cwd=tmp_path, stdout=out, stderr=err,
                                 env={**os.environ, "OMP_NUM_THREADS": "1"}, start_new_session=True)
        wait_for(tmp_path / "run" / "metrics.jsonl")
        deadline = time.monotonic() + 240  # a wait on a state, not a speed limit
        while len(records(tmp_path / "run")) < 3 and group.poll() is None:
            assert time.monotonic() < deadline, "no 3 steps"
            time.sleep(0.1)
        os.killpg(group.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        group.wait(timeout=240)
    stdout, stderr = (tmp_path / "out.txt").read_text(), (tmp_path / "err.txt").read_text()
    (line,) = [line for line in stdout.splitlines() if line.startswith("interrupted: ")]
    assert "llm_sweep/" not in stderr and "RunInterrupted" not in stderr, stderr[-3000:]
    command = line.split("Resume it (same folder, same MLflow run): ")[1]
    assert command.startswith("torchrun --nproc_per_node=2 -m llm_sweep ")
    assert json.loads((tmp_path / "run" / "status.json").read_text())["status"] == "killed"
    (checkpoint,) = (tmp_path / "run" / "checkpoints").iterdir()
    resumed = subprocess.run([*torchrun, *command.split()[2:]], cwd=tmp_path, capture_output=True, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed at step {int(checkpoint.stem.split('_')[1])}" in resumed.stdout
    assert summary(tmp_path / "run")["steps"] == 40
