"""MLflow tracking end to end: the real app in processes of its own, read back with MlflowClient.

The app's processes are forked from one that has imported torch, MLflow and llm_sweep
(tests/fixtures/c_fork_server.py), which spares each the seconds of those imports."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient

from conftest import TINY
from fixtures.c_fork_server import TRACKED, ForkServer

pytestmark = pytest.mark.slow

TRACKED_TINY = [o for o in TINY if not o.startswith("tracking")]
FINAL_ARTIFACTS = {"config.yaml", "overrides.yaml", "summary.json", "loss_curve.png"}

# Eight tracked jobs at once, each a process of its own with its own database connection,
# used the way training uses the tracker: start, 200 logged steps, finish. They are forked
# from one parent that has done the imports (seconds each), not the database access (the
# parent itself is forked from the server, which has done them already).
CONCURRENT_JOBS = """
import multiprocessing
import sys
import time
from pathlib import Path

import mlflow.store.tracking.sqlalchemy_store
import torch._dynamo
from llm_sweep.core.config import RunConfig
from llm_sweep.core.run_record import config_hash
from llm_sweep.tracking import start_tracking
from llm_sweep.tracking.describe import JobContext
from llm_sweep.tracking.mlflow_run import MlflowTracker


def job(uri: str, index: int, run_dir: Path) -> None:
    run = RunConfig()
    run.tracking.uri, run.tracking.experiment, run.tracking.run_name = uri, "concurrent", f"job{index}"
    tracker = start_tracking(run, JobContext(), run_dir, config_hash(run))
    assert isinstance(tracker, MlflowTracker), "not tracked"
    (sink,) = tracker.sinks()
    for step in range(1, 201):
        sink.log_metrics({"train/loss": 10.0 / step, "lr": 1e-3, "progress/tokens": 128.0 * step}, step)
        time.sleep(0.01)
    tracker.finish("FINISHED", summary={"val_loss": 1.0})


if __name__ == "__main__":
    uri, root = sys.argv[1], Path(sys.argv[2])
    fork = multiprocessing.get_context("fork")
    jobs = [fork.Process(target=job, args=(uri, i, root / f"run{i}")) for i in range(8)]
    for process in jobs:
        process.start()
    for process in jobs:
        process.join()
    sys.exit(max(process.exitcode for process in jobs))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def only_experiment_runs(client: MlflowClient, experiment: str) -> list:
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment!r}"
    return client.search_runs([exp.experiment_id])


class MlflowServer:
    """`mlflow server` on a free port in its own process group (it starts uvicorn's process)."""

    def __init__(self, root: Path, app: ForkServer):
        self.uri = f"http://127.0.0.1:{free_port()}"
        self.log = root / "server.err"
        self.proc = app.start(["server", "--backend-store-uri", f"sqlite:///{root}/server.db", "--host", "127.0.0.1",
                               "--port", self.uri.rsplit(":", 1)[1], "--workers", "1"], root, module="mlflow",
                              env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}, stdout=root / "server.out",
                              stderr=self.log, start_new_session=True)

    def wait_ready(self, timeout_s: float = 120) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-2000:]
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response:
                    if response.status == 200:
                        return self.uri
            except OSError:
                time.sleep(0.5)
        raise TimeoutError(f"mlflow server at {self.uri} did not answer /health")

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(60)


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> ForkServer:
    """Runs `python -m llm_sweep` (or a script, or `python -m mlflow server`) in a process
    forked from one that has done the imports."""
    server = ForkServer([*TRACKED, "mlflow.cli"], tmp_path_factory.mktemp("fork_server"))
    yield server
    server.close()


@pytest.fixture(scope="module", autouse=True)
def mlflow_server(tmp_path_factory, app):
    """Started with the module so its ~20 s start-up overlaps the other tests."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow_server"), app)
    yield server
    server.stop()


def test_a_run_logs_params_metrics_tags_artifacts_in_the_default_store(tmp_path, app):
    done = app.run([*TRACKED_TINY, "tracking.log_interval=2", "hydra.run.dir=run"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")  # resolved against the start dir
    (run,) = only_experiment_runs(client, "llm_sweep")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert run.info.status == "FINISHED"
    assert run.info.run_name.startswith("tiny-adamw-tokenizerbytes-n_layer1-n_embd64-"), run.info.run_name
    assert "-steps6" in run.info.run_name and "batches" not in run.info.run_name  # eval.* left out
    params, tags = run.data.params, run.data.tags
    overridden = dict(override.split("=", 1) for override in TRACKED_TINY)
    assert {key: params[key] for key in overridden} == overridden
    assert params["model.params"] == str(summary["params"])
    assert params["model.non_embedding_params"] == str(summary["non_embedding_params"])
    assert params["flops_per_token"] == str(summary["flops_per_token"])
    tokens_per_step = summary["tokens_per_step"]
    assert params["tokens_per_step"] == str(tokens_per_step)
    assert tags["config_hash"] == status["config_hash"]
    assert tags["overrides"] == " ".join([*TRACKED_TINY, "tracking.log_interval=2"])
    assert tags["device"].startswith("cpu")
    history = client.get_metric_history(run.info.run_id, "train/loss")
    assert [m.step for m in history] == [2, 4, 6]
    tokens = client.get_metric_history(run.info.run_id, "progress/tokens")
    assert [m.value for m in tokens] == [2 * tokens_per_step, 4 * tokens_per_step, 6 * tokens_per_step]
    assert run.data.metrics["final/val_loss"] == pytest.approx(summary["val_loss"])
    assert run.data.metrics["final/tokens"] == 6 * tokens_per_step
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == FINAL_ARTIFACTS
    assert not (tmp_path / "mlruns").exists()


def test_a_multirun_nests_its_jobs_under_one_parent_that_names_the_best(tmp_path, app):
    # the third job diverges: FAILED with its error, and never the best
    done = app.run(["--multirun", *TRACKED_TINY, "optim.lr=1e-3,4e-3,1e30",
                    "hydra.sweep.dir=sweep"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = only_experiment_runs(client, "llm_sweep")
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = {r.data.tags["job_index"]: r for r in runs
                if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert len(runs) == 4 and sorted(children) == ["0", "1", "2"]
    assert [children[i].info.run_name for i in "012"] == [
        "tiny-adamw-lr0.001", "tiny-adamw-lr0.004", "tiny-adamw-lr1e+30"]
    assert [children[i].info.status for i in "012"] == ["FINISHED", "FINISHED", "FAILED"]
    assert children["2"].data.tags["error"].startswith("TrainingDiverged: train/loss became nan")
    failed_artifacts = {a.path for a in client.list_artifacts(children["2"].info.run_id)}
    assert {"config.yaml", "overrides.yaml"} <= failed_artifacts
    assert "summary.json" not in failed_artifacts
    assert {c.data.tags["sweep_id"] for c in children.values()} == {str(tmp_path / "sweep")}
    best = min(children["0"], children["1"], key=lambda c: c.data.metrics["final/val_loss"])
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["best_run_id"] == best.info.run_id
    assert parent.data.metrics["best/val_loss"] == best.data.metrics["final/val_loss"]
    assert parent.data.params["override.optim.lr"] == "1e-3,4e-3,1e30"
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} == {"sweep.yaml"}


def test_eight_jobs_starting_at_once_on_a_fresh_sqlite_file_lose_nothing(tmp_path, app):
    script = tmp_path / "jobs.py"
    script.write_text(CONCURRENT_JOBS)
    uri = f"sqlite:///{tmp_path}/fresh.db"
    done = app.run([uri, str(tmp_path)], tmp_path, script=script, module=None)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "database is locked" not in done.stderr and "not logged" not in done.stderr
    client = MlflowClient(uri)
    runs = only_experiment_runs(client, "concurrent")
    assert sorted(r.info.run_name for r in runs) == [f"job{i}" for i in range(8)]
    for run in runs:
        assert run.info.status == "FINISHED"
        for key in ("train/loss", "lr", "progress/tokens"):
            steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
            assert sorted(steps) == list(range(1, 201)), (run.info.run_name, key)


def test_an_unreachable_server_leaves_training_successful_with_a_warning(tmp_path, app):
    start = time.monotonic()
    done = app.run([*TRACKED_TINY, f"tracking.uri=http://127.0.0.1:{free_port()}",
                    "hydra.run.dir=run"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert time.monotonic() - start < 90
    output = done.stdout + done.stderr
    assert "training continues untracked" in output
    assert "not logged: " in output and "summary.json, loss_curve.png, status FINISHED" in output
    assert json.loads((tmp_path / "run" / "status.json").read_text())["status"] == "finished"
    assert (tmp_path / "run" / "summary.json").exists()


def test_a_tracking_server_receives_the_run_over_http(tmp_path, mlflow_server, app):
    uri = mlflow_server.wait_ready()
    done = app.run([*TRACKED_TINY, f"tracking.uri={uri}", "tracking.experiment=over-http",
                    "hydra.run.dir=run"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient(uri)
    (run,) = only_experiment_runs(client, "over-http")
    assert run.info.status == "FINISHED" and run.data.params["model.n_embd"] == "64"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] == [6]
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == FINAL_ARTIFACTS
    assert not (tmp_path / "mlflow.db").exists()
