"""Whatever a sweep's job raises, the job is recorded FAILED and the sweep goes on, with every
launcher and sweeper: the basic launcher, submitit's local launcher, the Optuna sweeper.

Each sweep is the CLI, `python -m llm_sweep --multirun ...`, run once; the four run one
after another in one process that pays the imports once (tests/fixtures/b_cli_batch.py).
A job that fails gets a cache_dir that is a file: preparing data there raises
FileExistsError, an error that is not one of llm_sweep's own.
"""
from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient

from conftest import TINY
from fixtures.b_cli_batch import Ran, command, run_commands

# The job that trains still trains, evaluates and records, at the least cost: 2 steps, one final batch.
CHEAP = [o for o in TINY if not o.startswith(("budget.steps", "eval.final_batches"))] + [
    "budget.steps=2", "eval.final_batches=1"]
TRACKED_CHEAP = [o for o in CHEAP if not o.startswith("tracking")]
pytestmark = pytest.mark.slow


def make_not_a_folder(folder: Path) -> Path:
    """A cache_dir that is a file: preparing data there raises FileExistsError."""
    folder.mkdir()
    path = folder / "a_file"
    path.write_text("not a folder")
    return path


def commands(root: Path) -> dict[str, tuple[str, list[str]]]:
    """The sweeps of the tests below, in the order they run: {name: (folder under root, args)}.
    In each, the first value of data.cache_dir is a file, the second a folder."""
    cache = {name: f"{make_not_a_folder(root / name)},{root / name / 'cache'}"
             for name in ("fail_fast", "submitit", "optuna", "failing")}
    return {
        "fail_fast": ("fail_fast", ["--multirun", *CHEAP, f"data.cache_dir={cache['fail_fast']}",
                                    "sweep.fail_fast=true", "hydra.sweep.dir=sweep"]),
        "submitit": ("submitit", ["--multirun", "hydra/launcher=local_parallel", *CHEAP,
                                  f"data.cache_dir={cache['submitit']}", "hydra.sweep.dir=sweep"]),
        "optuna": ("optuna", ["--multirun", "hydra/sweeper=optuna", "hydra.sweeper.sampler=grid",
                              "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=1",
                              f"hydra.sweeper.storage=sqlite:///{root}/optuna/optuna.db",
                              "hydra.sweeper.study_name=crash", *CHEAP,
                              f"data.cache_dir=choice({cache['optuna']})", "hydra.sweep.dir=sweep"]),
        # Tracked, and last: the one that opens an MLflow store. Job 0 gets the file as its
        # cache_dir, jobs 1 and 3 a bad dropout (checked before any data is read), job 2 trains.
        "failing": ("failing", ["--multirun", *TRACKED_CHEAP, f"data.cache_dir={cache['failing']}",
                                "model.dropout=0.0,1.5", "hydra.sweep.dir=sweep"]),
    }


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory) -> dict[str, tuple[Ran, Path]]:
    """The sweeps of the tests below, each run once: {name: (its result, the folder it ran in)}."""
    root = tmp_path_factory.mktemp("sweeps")
    plan = commands(root)
    results = run_commands([command(args, root / folder) for folder, args in plan.values()], root)
    return {name: (result, root / folder) for (name, (folder, _)), result in zip(plan.items(), results)}


def status(job_dir: Path) -> dict:
    return json.loads((job_dir / "status.json").read_text())


def children(folder: Path) -> dict[str, object]:
    client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
    (experiment,) = [e for e in client.search_experiments() if e.name == "llm_sweep"]
    runs = client.search_runs([experiment.experiment_id])
    return {r.data.tags["job_index"]: r for r in runs if "mlflow.parentRunId" in r.data.tags}


def test_any_exception_of_a_job_is_recorded_and_the_sweep_goes_on(sweeps):
    done, folder = sweeps["failing"]
    assert done.returncode == 0, done.stderr[-3000:]
    assert "1/4 jobs finished" in done.stdout
    table = (folder / "sweep" / "sweep_results.md").read_text()
    assert "| 0 | failed | - |" in table and "FileExistsError" in table
    assert "| 2 | finished |" in table
    assert status(folder / "sweep" / "0")["error"].startswith("FileExistsError")
    runs = children(folder)
    assert runs["0"].info.status == "FAILED" and runs["0"].data.tags["error"].startswith("FileExistsError")
    assert runs["2"].info.status == "FINISHED"


def test_a_job_with_a_bad_value_shows_in_mlflow_as_failed(sweeps):
    done, folder = sweeps["failing"]
    assert done.returncode == 0, done.stderr[-3000:]
    message = "model.dropout=1.5 is not allowed: must be >= 0 and < 1"
    assert done.stderr.splitlines().count(f"error: {message}") == 2
    assert done.stderr.count("Traceback") == 1  # job 0's crash: a bad value is one line, no traceback
    runs = children(folder)
    for job in ("1", "3"):
        assert status(folder / "sweep" / job)["error"] == message
        assert runs[job].info.status == "FAILED" and "model.dropout=1.5" in runs[job].data.tags["error"]
    assert runs["2"].info.status == "FINISHED"


def test_fail_fast_makes_the_first_failure_end_the_sweep_with_an_error(sweeps):
    done, folder = sweeps["fail_fast"]
    assert done.returncode != 0 and "FileExistsError" in done.stderr
    assert status(folder / "sweep" / "0")["status"] == "failed"


def test_the_submitit_launcher_records_a_crashing_job_and_goes_on(sweeps):
    done, folder = sweeps["submitit"]
    assert done.returncode == 0, done.stderr[-3000:]
    table = (folder / "sweep" / "sweep_results.md").read_text()
    assert "| 0 | failed | - |" in table and "FileExistsError" in table and "| 1 | finished |" in table


def test_the_optuna_sweeper_records_a_crashing_trial_as_fail(sweeps):
    done, folder = sweeps["optuna"]
    assert done.returncode == 0, done.stderr[-3000:]
    trials = optuna.load_study(study_name="crash", storage=f"sqlite:///{folder}/optuna.db").trials
    states = sorted(t.state.name for t in trials)
    assert states == ["COMPLETE", "FAIL"]
    (failed,) = [t for t in trials if t.state.name == "FAIL"]
    assert "FileExistsError" in failed.user_attrs["error"]
