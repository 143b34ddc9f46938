"""Whatever a sweep's job raises, the job is recorded FAILED and the sweep goes on, with every
launcher and sweeper: the basic launcher, submitit's local launcher, the Optuna sweeper."""
from __future__ import annotations

import json

import optuna
import pytest
from mlflow import MlflowClient

from conftest import TINY, run_app

TRACKED_TINY = [o for o in TINY if not o.startswith("tracking")]
pytestmark = pytest.mark.slow


def make_not_a_folder(folder):
    """A cache_dir that is a file: preparing data there raises FileExistsError, an error
    that is not one of llm_sweep's own."""
    path = folder / "a_file"
    path.write_text("not a folder")
    return path


@pytest.fixture
def not_a_folder(tmp_path):
    return make_not_a_folder(tmp_path)


def status(job_dir) -> dict:
    return json.loads((job_dir / "status.json").read_text())


def children(folder) -> dict[str, object]:
    client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
    (experiment,) = [e for e in client.search_experiments() if e.name == "llm_sweep"]
    runs = client.search_runs([experiment.experiment_id])
    return {r.data.tags["job_index"]: r for r in runs if "mlflow.parentRunId" in r.data.tags}


@pytest.fixture(scope="module")
def failing_sweep(tmp_path_factory):
    """One tracked sweep whose jobs fail in both ways, run once for the tests below:
    job 0 with a cache_dir that is a file, jobs 1 and 3 with a bad dropout (checked before
    any data is read), job 2 trains. Returns (the finished process, its folder)."""
    folder = tmp_path_factory.mktemp("failing_sweep")
    cache = f"{make_not_a_folder(folder)},{folder / 'cache'}"
    done = run_app(["--multirun", *TRACKED_TINY, f"data.cache_dir={cache}", "model.dropout=0.0,1.5",
                    "hydra.sweep.dir=sweep"], cwd=folder)
    return done, folder


def test_any_exception_of_a_job_is_recorded_and_the_sweep_goes_on(failing_sweep):
    done, folder = failing_sweep
    assert done.returncode == 0, done.stderr[-3000:]
    assert "1/4 jobs finished" in done.stdout
    table = (folder / "sweep" / "sweep_results.md").read_text()
    assert "| 0 | failed | - |" in table and "FileExistsError" in table
    assert "| 2 | finished |" in table
    assert status(folder / "sweep" / "0")["error"].startswith("FileExistsError")
    runs = children(folder)
    assert runs["0"].info.status == "FAILED" and runs["0"].data.tags["error"].startswith("FileExistsError")
    assert runs["2"].info.status == "FINISHED"


def test_a_job_with_a_bad_value_shows_in_mlflow_as_failed(failing_sweep):
    done, folder = failing_sweep
    assert done.returncode == 0, done.stderr[-3000:]
    message = "model.dropout=1.5 is not allowed: must be >= 0 and < 1"
    assert done.stderr.splitlines().count(f"error: {message}") == 2
    assert done.stderr.count("Traceback") == 1  # job 0's crash: a bad value is one line, no traceback
    runs = children(folder)
    for job in ("1", "3"):
        assert status(folder / "sweep" / job)["error"] == message
        assert runs[job].info.status == "FAILED" and "model.dropout=1.5" in runs[job].data.tags["error"]
    assert runs["2"].info.status == "FINISHED"


def test_fail_fast_makes_the_first_failure_end_the_sweep_with_an_error(tmp_path, not_a_folder):
    done = run_app(["--multirun", *TINY, f"data.cache_dir={not_a_folder},{tmp_path / 'cache'}",
                    "sweep.fail_fast=true", "hydra.sweep.dir=sweep"], cwd=tmp_path)
    assert done.returncode != 0 and "FileExistsError" in done.stderr
    assert status(tmp_path / "sweep" / "0")["status"] == "failed"


def test_the_submitit_launcher_records_a_crashing_job_and_goes_on(tmp_path, not_a_folder):
    done = run_app(["--multirun", "hydra/launcher=local_parallel", *TINY,
                    f"data.cache_dir={not_a_folder},{tmp_path / 'cache'}", "hydra.sweep.dir=sweep"],
                   cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    table = (tmp_path / "sweep" / "sweep_results.md").read_text()
    assert "| 0 | failed | - |" in table and "FileExistsError" in table and "| 1 | finished |" in table


def test_the_optuna_sweeper_records_a_crashing_trial_as_fail(tmp_path, not_a_folder):
    storage = f"sqlite:///{tmp_path}/optuna.db"
    done = run_app(["--multirun", "hydra/sweeper=optuna", "hydra.sweeper.sampler=grid",
                    "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=1", f"hydra.sweeper.storage={storage}",
                    "hydra.sweeper.study_name=crash", *TINY,
                    f"data.cache_dir=choice({not_a_folder},{tmp_path / 'cache'})",
                    "hydra.sweep.dir=sweep"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    trials = optuna.load_study(study_name="crash", storage=storage).trials
    states = sorted(t.state.name for t in trials)
    assert states == ["COMPLETE", "FAIL"]
    (failed,) = [t for t in trials if t.state.name == "FAIL"]
    assert "FileExistsError" in failed.user_attrs["error"]
