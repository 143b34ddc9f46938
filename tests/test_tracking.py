"""MLflow tracking, in-process against a real SQLite store read back with MlflowClient."""
from __future__ import annotations

import json
import logging
import socket
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, RunStatus
from omegaconf import OmegaConf

from llm_sweep.core.config import RunConfig
from llm_sweep.core.run_record import (MLFLOW_FAILED, MLFLOW_FINISHED, MLFLOW_KILLED, PARENT_FILE, STATUSES,
                                       config_hash)
from llm_sweep.models.build import build_model
from llm_sweep.tracking import NullTracker, start_tracking
from llm_sweep.tracking.callback import MlflowSweepCallback
from llm_sweep.tracking.describe import (JobContext, derived_params, experiment_name,
                                         flatten_params, git_tags, run_name)
from llm_sweep.tracking.import_runs import MLFLOW_STATUS
from llm_sweep.tracking.loss_curve import plot_loss_curve, read_loss_curves
from llm_sweep.tracking.metric_queue import BackgroundMetricLogger
from llm_sweep.tracking.mlflow_run import MlflowTracker, UntrackedRun
from llm_sweep.tracking.parent import SweepParent
from llm_sweep.tracking.redact import redact
from llm_sweep.tracking.store import open_experiment, resolve_uri, route_mlflow_logs, with_retries
from llm_sweep.tracking.sweep_run import finish_parent_run
from llm_sweep.training.sinks import JsonlSink, RunInfo

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def store_uri(tmp_path_factory) -> str:
    """One SQLite store for the module (creating its schema takes seconds)."""
    return f"sqlite:///{tmp_path_factory.mktemp('store')}/mlflow.db"


@pytest.fixture(scope="module")
def client(store_uri) -> MlflowClient:
    return open_experiment(store_uri, "unit")[0]


def free_port() -> int:
    """A port nothing listens on (bound, read, released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny_run(uri: str, experiment: str) -> RunConfig:
    run = RunConfig()
    run.model.n_layer, run.model.n_embd, run.model.head_dim = 1, 64, 32
    run.batch.micro_batch_size, run.batch.seq_len = 4, 32
    run.tracking.uri, run.tracking.experiment, run.tracking.run_name = uri, experiment, "unit-run"
    return run


def hydra_files(run_dir: Path) -> None:
    """The two files Hydra writes into every run directory."""
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text("optim:\n  lr: 0.001\n")
    (run_dir / ".hydra" / "overrides.yaml").write_text("- optim.lr=0.001\n")


# --- what a run records about itself -------------------------------------------------

def test_redact_hides_uri_passwords_and_secret_query_values():
    assert redact("postgresql://alice:s3cret@db:5432/mlflow") == "postgresql://alice:***@db:5432/mlflow"
    assert redact("https://h/x?token=abc&page=2") == "https://h/x?token=***&page=2"
    assert redact("s3://b/k?X-Amz-Signature=f00&a=1") == "s3://b/k?X-Amz-Signature=***&a=1"
    assert redact("tracking.uri=http://u:pw@h:5000 optim.lr=0.1") == "tracking.uri=http://u:***@h:5000 optim.lr=0.1"
    assert redact("data.hf_token=abc optim.lr=0.1") == "data.hf_token=*** optim.lr=0.1"
    for plain in ("sqlite:////tmp/mlflow.db", "http://user@host:5000", "budget.tokens=1000"):
        assert redact(plain) == plain


def test_flatten_params_dots_keys_hides_secrets_and_truncates():
    params = flatten_params({
        "model": {"n_embd": 256, "n_head": None},
        "data": {"paths": ["a.txt", "dir/"], "source": "https://u:pw@hub/d", "hf_token": "abc"},
        "budget": {"tokens": 1000},
        "note": "x" * 7000,
    })
    assert params == {
        "model.n_embd": "256", "model.n_head": "null", "data.paths": '["a.txt", "dir/"]',
        "data.source": "https://u:***@hub/d", "data.hf_token": "***", "budget.tokens": "1000",
        "note": "x" * 6000,
    }


def test_run_name_is_the_presets_then_the_overridden_values():
    run = RunConfig()
    run.model.name = "wide3"
    overrides = ["model=wide3", "optim=adamw", "optim.lr=0.00125", "tracking.uri=http://h",
                 "hydra.run.dir=out", "data.cache_dir=/c", "eval.batches=2"]
    assert run_name(run, overrides) == "wide3-adamw-lr0.00125"


def test_run_name_in_a_sweep_shows_only_what_varies():
    run = RunConfig()
    overrides = ["schedule=wsd", "model.n_embd=64", "optim.lr=0.002", "+seed=3", "+data.hf_token=x"]
    shared = ["model.n_embd=64", "optim.lr=1e-3,2e-3"]
    assert run_name(run, overrides, shared) == "custom-adamw-wsd-lr0.002-seed3"
    run.tracking.run_name = "mine"
    assert run_name(run, overrides, shared) == "mine"


def test_experiment_is_configured_else_the_named_sweep_else_the_job_name():
    assert experiment_name("mine", "llm_sweep", "lr_sweep", multirun=True) == "mine"
    assert experiment_name(None, "llm_sweep", "lr_sweep", multirun=True) == "lr_sweep"
    assert experiment_name(None, "llm_sweep", None, multirun=True) == "llm_sweep"
    assert experiment_name(None, "llm_sweep", "lr_sweep", multirun=False) == "llm_sweep"


def test_tracking_uri_is_absolute_and_honours_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    base = tmp_path.resolve()
    assert resolve_uri(None, tmp_path) == f"sqlite:///{base}/mlflow.db"
    assert resolve_uri("sqlite:///runs/x.db", tmp_path) == f"sqlite:///{base}/runs/x.db"
    assert resolve_uri("sqlite:////abs/x.db", tmp_path) == "sqlite:////abs/x.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///env.db")
    assert resolve_uri(None, tmp_path) == f"sqlite:///{base}/env.db"
    assert resolve_uri("http://h:5000", tmp_path) == "http://h:5000"


def test_derived_params_match_the_real_model():
    run = tiny_run("", "unit")
    model = build_model(run.model)
    assert derived_params(run) == {
        "model.params": str(model.num_params()),
        "model.non_embedding_params": str(model.num_params(non_embedding=True)),
        "flops_per_token": str(model.flops_per_token(32)),
        "tokens_per_step": "128",
    }


def test_git_tags_name_the_commit_and_whether_tracked_files_changed(tmp_path):
    pkg = tmp_path / "repo" / "pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("x = 1\n")
    git = ["git", "-C", str(pkg), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "init"], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert git_tags(pkg) == {"git_commit": commit, "git_dirty": "false"}
    (pkg / "new.py").write_text("")  # untracked files do not make the checkout dirty
    assert git_tags(pkg)["git_dirty"] == "false"
    (pkg / "__init__.py").write_text("x = 2\n")
    assert git_tags(pkg) == {"git_commit": commit, "git_dirty": "true"}
    untracked_copy = tmp_path / "repo" / "site" / "pkg"
    untracked_copy.mkdir(parents=True)
    (untracked_copy / "__init__.py").write_text("")
    assert git_tags(untracked_copy) == {}
    assert git_tags(tmp_path) == {}


def test_loss_curves_put_train_and_val_loss_on_a_token_axis(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    sink = JsonlSink(metrics)
    sink.log_metrics({"train/loss": 5.0, "progress/tokens": 1280}, 10)
    sink.log_metrics({"train/loss": 4.0, "progress/tokens": 2560}, 20)
    sink.log_metrics({"val/loss": 4.5, "val/ppl": 90.0}, 20)
    sink.log_metrics({"val/loss": 4.2, "final/val_loss": 4.2}, 25)
    with open(metrics, "a") as f:
        f.write('{"step": 30, "train/lo')  # cut short by a killed job
    assert read_loss_curves(metrics, tokens_per_step=128) == (
        [(1280, 5.0), (2560, 4.0)], [(2560, 4.5), (3200, 4.2)])
    png = tmp_path / "loss.png"
    assert plot_loss_curve(metrics, 128, png, title="run")
    assert png.read_bytes()[:8] == PNG_MAGIC
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert not plot_loss_curve(empty, 128, tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()


# --- the store ------------------------------------------------------------------------

def test_with_retries_waits_out_a_locked_database_only():
    calls = []

    def locked_twice() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise sqlite3.OperationalError("database is locked")
        return "done"

    assert with_retries(locked_twice, first_delay_s=0.01) == "done" and len(calls) == 3

    def broken() -> None:
        calls.append(1)
        raise ValueError("not transient")

    calls.clear()
    with pytest.raises(ValueError):
        with_retries(broken, first_delay_s=0.01)
    assert len(calls) == 1


def test_open_experiment_puts_artifacts_beside_the_database(store_uri, client):
    again, experiment_id = open_experiment(store_uri, "unit")
    experiment = again.get_experiment(experiment_id)
    db_dir = Path(store_uri[len("sqlite:///"):]).parent
    assert experiment.name == "unit"
    assert experiment.artifact_location == (db_dir / "mlartifacts").as_uri()
    assert open_experiment(store_uri, "unit")[1] == experiment_id  # get, not create again


def test_background_logger_delivers_every_value_in_batches(client):
    run_id = client.create_run(client.get_experiment_by_name("unit").experiment_id).info.run_id
    logger = BackgroundMetricLogger(
        lambda batch: client.log_batch(run_id, metrics=[Metric(*v) for v in batch]), interval_s=0.05)
    for step in range(1, 1501):
        logger.log_metrics({"train/loss": 1.0 / step, "lr": 0.1}, step)
    assert logger.close(timeout_s=30) == 0
    assert logger.sent == 3000  # more than one log_batch of 1000
    history = client.get_metric_history(run_id, "train/loss")
    assert sorted(m.step for m in history) == list(range(1, 1501))
    assert {m.value for m in client.get_metric_history(run_id, "lr")} == {0.1}


def test_background_logger_keeps_training_fast_while_the_store_is_down(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    dead = MlflowClient(tracking_uri=f"http://127.0.0.1:{free_port()}")
    logger = BackgroundMetricLogger(
        lambda batch: dead.log_batch("0" * 32, metrics=[Metric(*v) for v in batch]), interval_s=0.01)
    start = time.perf_counter()
    for step in range(100):
        logger.log_metrics({"train/loss": 1.0, "lr": 0.1, "perf/mfu": 0.5}, step)
    assert time.perf_counter() - start < 0.5
    time.sleep(0.2)  # the sender has tried and failed by now
    assert logger.close(timeout_s=1.0) == 300
    assert logger.sent == 0 and logger.last_error is not None


# --- the tracker ------------------------------------------------------------------------

def test_tracking_none_tracks_nothing(tmp_path):
    run = RunConfig()
    run.tracking.backend = "none"
    tracker = start_tracking(run, JobContext(), tmp_path, config_hash(run))
    assert isinstance(tracker, NullTracker) and tracker.sinks() == []


def test_a_finished_run_has_params_tags_metrics_artifacts(store_uri, client, tmp_path):
    run = tiny_run(store_uri, "unit-finished")
    run.data.source = "https://alice:hunter2@hub.example/d?token=abc"
    run.tracking.log_checkpoint = True
    run_dir = tmp_path / "run"
    hydra_files(run_dir)
    (run_dir / "checkpoints").mkdir()
    (run_dir / "checkpoints" / "step_0000020.pt").write_bytes(b"weights")
    tracker = start_tracking(run, JobContext(), run_dir, config_hash(run))
    assert isinstance(tracker, MlflowTracker)
    sinks = [JsonlSink(run_dir / "metrics.jsonl"), *tracker.sinks()]
    for sink in sinks:  # what train() announces when it starts
        sink.start(RunInfo(device="cpu (2 threads)", dtype="fp32", compiled=False, params=1,
                           non_embedding_params=1, flops_per_token=6, tokens_per_step=128,
                           peak_flops=None))
    for step in range(1, 21):
        for sink in sinks:
            sink.log_metrics({"train/loss": 10.0 - step / 10, "progress/tokens": 128 * step}, step)
    tracker.finish("FINISHED", summary={"val_loss": 3.5})

    got = client.get_run(tracker.run_id)
    assert got.info.status == "FINISHED" and got.info.run_name == "unit-run"
    params, tags = got.data.params, got.data.tags
    assert params["model.n_embd"] == "64" and params["optim.lr"] == "0.001"
    assert params["model.params"] == str(build_model(run.model).num_params())
    assert params["tokens_per_step"] == "128"
    assert params["data.source"] == "https://alice:***@hub.example/d?token=***"
    assert not any("hunter2" in v for v in [*params.values(), *tags.values()])
    assert tags["config_hash"] == config_hash(run) and tags["host"] == socket.gethostname()
    assert tags["device"].startswith("cpu") and "torch_version" in tags
    assert "sweep_id" not in tags and "mlflow.parentRunId" not in tags
    assert [m.step for m in client.get_metric_history(tracker.run_id, "train/loss")] == list(range(1, 21))
    artifacts = {a.path for a in client.list_artifacts(tracker.run_id)}
    assert artifacts == {"config.yaml", "overrides.yaml", "summary.json", "loss_curve.png", "checkpoints"}
    assert [a.path for a in client.list_artifacts(tracker.run_id, "checkpoints")] == [
        "checkpoints/step_0000020.pt"]
    summary = client.download_artifacts(tracker.run_id, "summary.json", str(tmp_path))
    assert json.loads(Path(summary).read_text()) == {"val_loss": 3.5}


def test_the_mlflow_statuses_are_mlflows_own_and_every_job_status_has_one():
    assert [RunStatus.from_string(s) for s in (MLFLOW_FINISHED, MLFLOW_FAILED, MLFLOW_KILLED)] == [
        RunStatus.FINISHED, RunStatus.FAILED, RunStatus.KILLED]
    assert set(MLFLOW_STATUS) == set(STATUSES)
    assert set(MLFLOW_STATUS.values()) == {MLFLOW_FINISHED, MLFLOW_FAILED, MLFLOW_KILLED}


@pytest.mark.parametrize("status, error", [
    (MLFLOW_FAILED, "TrainingDiverged: train/loss became nan at step 3"),
    (MLFLOW_KILLED, "interrupted"),
])
def test_a_failed_or_killed_run_records_why(store_uri, client, tmp_path, status, error):
    run = tiny_run(store_uri, "unit-failed")
    hydra_files(tmp_path)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "step_0000003.pt").write_bytes(b"weights")  # log_checkpoint is off
    tracker = start_tracking(run, JobContext(), tmp_path, config_hash(run))
    tracker.sinks()[0].log_metrics({"train/loss": float("nan")}, 3)
    tracker.finish(status, error=error)
    got = client.get_run(tracker.run_id)
    assert got.info.status == status and got.data.tags["error"] == error
    assert {a.path for a in client.list_artifacts(tracker.run_id)} == {"config.yaml", "overrides.yaml"}
    assert [m.step for m in client.get_metric_history(tracker.run_id, "train/loss")] == [3]


def test_a_resumed_job_continues_its_mlflow_run(store_uri, client, tmp_path):
    run = tiny_run(store_uri, "unit-resume")
    hydra_files(tmp_path)
    first = start_tracking(run, JobContext(), tmp_path, config_hash(run))
    first.sinks()[0].log_metrics({"train/loss": 2.0}, 10)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "step_0000010.pt").write_bytes(b"weights")
    first.finish("KILLED", error="RunInterrupted: stopped at step 10; checkpoint saved")

    requeued = start_tracking(run, JobContext(), tmp_path, config_hash(run))
    assert requeued.run_id == first.run_id
    continued = client.get_run(first.run_id)
    assert continued.info.status == "RUNNING" and "error" not in continued.data.tags
    requeued.sinks()[0].log_metrics({"train/loss": 1.0}, 20)
    requeued.finish("FINISHED", summary={"val_loss": 1.0})
    assert client.get_run(first.run_id).info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(first.run_id, "train/loss")] == [10, 20]

    (tmp_path / "checkpoints" / "step_0000010.pt").unlink()  # nothing to resume from
    fresh = start_tracking(run, JobContext(), tmp_path, config_hash(run))
    assert fresh.run_id != first.run_id
    fresh.finish("FINISHED")


def test_an_unreachable_server_leaves_the_run_untracked_with_a_warning(tmp_path, caplog):
    run = tiny_run(f"http://127.0.0.1:{free_port()}", "unit-dead")
    hydra_files(tmp_path)
    start = time.perf_counter()
    with caplog.at_level(logging.WARNING):
        tracker = start_tracking(run, JobContext(), tmp_path, config_hash(run))
    assert time.perf_counter() - start < 10
    assert isinstance(tracker, UntrackedRun)
    for step in range(5):
        tracker.sinks()[0].log_metrics({"train/loss": 1.0, "lr": 0.1}, step)
    with caplog.at_level(logging.WARNING):
        tracker.finish("FINISHED", summary={"val_loss": 1.0})
    assert "training continues untracked" in caplog.text
    assert "not logged: 10 metric values, artifacts config.yaml, overrides.yaml, summary.json" in caplog.text


@pytest.mark.slow
def test_a_server_lost_mid_run_costs_only_a_warning(tmp_path, caplog, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    run = tiny_run("", "unit-lost")
    hydra_files(tmp_path)
    gone = MlflowClient(tracking_uri=f"http://127.0.0.1:{free_port()}")  # the server died
    tracker = MlflowTracker(gone, "0" * 32, "unit-run", run, tmp_path, gone.tracking_uri)
    sinks = [JsonlSink(tmp_path / "metrics.jsonl"), *tracker.sinks()]
    for step in range(1, 11):
        for sink in sinks:
            sink.log_metrics({"train/loss": 1.0, "progress/tokens": 128 * step}, step)
    start = time.perf_counter()
    with caplog.at_level(logging.WARNING):
        tracker.finish("FAILED", summary=None, error="RuntimeError: boom")
    assert time.perf_counter() - start < 10
    (warning,) = [r.getMessage() for r in caplog.records if "not logged" in r.getMessage()]
    assert warning.startswith(
        f"MLflow run {'0' * 32}: not logged: 20 metric values, tag error, config.yaml, "
        "overrides.yaml, loss_curve.png, status FAILED (the run stays RUNNING); "
        "first error: MlflowException: API request to")


# --- sweeps ---------------------------------------------------------------------------

def test_the_sweep_parent_file_round_trips_and_is_private(tmp_path):
    parent = SweepParent("sqlite:////x.db", "3", "exp", "abc", ("optim.lr=1e-3,2e-3",))
    parent.write(tmp_path / "sweep")
    assert SweepParent.read(tmp_path / "sweep") == parent
    assert (tmp_path / "sweep" / PARENT_FILE).stat().st_mode & 0o777 == 0o600
    assert SweepParent.read(tmp_path) is None


def test_the_callback_does_nothing_with_tracking_none(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = OmegaConf.create({"tracking": {"backend": "none"}})  # no hydra node needed
    MlflowSweepCallback().on_multirun_start(config)
    MlflowSweepCallback().on_multirun_end(config)
    assert list(tmp_path.iterdir()) == []


def test_the_parent_names_its_best_finished_child_and_the_sweeper_results(store_uri, client, tmp_path):
    _, experiment_id = open_experiment(store_uri, "unit-sweep")
    parent_id = client.create_run(experiment_id, run_name="sweep").info.run_id
    SweepParent(store_uri, experiment_id, "unit-sweep", parent_id).write(tmp_path)
    children = {}
    for name, status, loss in [("a", "FINISHED", 3.2), ("b", "FINISHED", 2.9),
                               ("c", "FAILED", 1.0), ("d", "KILLED", None)]:
        child = client.create_run(experiment_id, run_name=name, tags={"mlflow.parentRunId": parent_id})
        if loss is not None:
            client.log_metric(child.info.run_id, "final/val_loss", loss)
        client.set_terminated(child.info.run_id, status)
        children[name] = child.info.run_id
    outsider = client.create_run(experiment_id, run_name="other").info.run_id
    client.log_metric(outsider, "final/val_loss", 0.5)
    client.set_terminated(outsider, "FINISHED")
    (tmp_path / "optimization_results.yaml").write_text("best_value: 2.9\n")
    (tmp_path / "param_importances.png").write_bytes(PNG_MAGIC)

    finish_parent_run(tmp_path)

    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["best_run_id"] == children["b"] and parent.data.tags["best_run_name"] == "b"
    assert parent.data.metrics == {"best/val_loss": 2.9, "sweep/runs": 4, "sweep/finished": 2}
    assert {a.path for a in client.list_artifacts(parent_id)} == {
        "optimization_results.yaml", "param_importances.png"}


def test_the_parent_run_records_the_sweep_definition(store_uri, client, tmp_path):
    config = OmegaConf.create({
        "tracking": {"backend": "mlflow", "uri": store_uri, "experiment": "unit-parent"},
        "hydra": {
            "job": {"name": "llm_sweep"},
            "runtime": {"cwd": str(tmp_path),
                        "choices": {"hydra/sweeper": "optuna", "hydra/launcher": "basic"}},
            "sweep": {"dir": "multirun/one"},
            "overrides": {"task": ["model=wide3", "+experiment=x", "data.hf_token=abc",
                                   "tracking.uri=http://u:pw@h:5000"]},
            "sweeper": {"_target_": "optuna.Sweeper", "n_trials": 20,
                        "params": {"optim.lr": "tag(log, interval(1e-4, 1e-2))", "+shape": "1x64,2x64"}},
        },
    })
    MlflowSweepCallback().on_multirun_start(config)

    parent = SweepParent.read(tmp_path / "multirun" / "one")
    assert parent.tracking_uri == store_uri and parent.experiment_name == "unit-parent"
    assert parent.shared_overrides == (
        "model=wide3", "+experiment=x", "data.hf_token=abc", "tracking.uri=http://u:pw@h:5000")
    run = client.get_run(parent.run_id)
    assert run.info.experiment_id == parent.experiment_id and run.info.status == "RUNNING"
    assert run.data.params == {
        "sweeper": "optuna", "launcher": "basic", "override.model": "wide3",
        "override.experiment": "x", "override.data.hf_token": "***",
        "override.tracking.uri": "http://u:***@h:5000",
        "search_space.optim.lr": "tag(log, interval(1e-4, 1e-2))", "search_space.shape": "1x64,2x64",
    }
    assert run.data.tags["sweep_id"] == str(tmp_path / "multirun" / "one")
    sweep_yaml = Path(client.download_artifacts(parent.run_id, "sweep.yaml", str(tmp_path)))
    definition = OmegaConf.load(sweep_yaml)
    assert definition.search_space == {"optim.lr": "tag(log, interval(1e-4, 1e-2))", "+shape": "1x64,2x64"}
    assert definition.sweeper_config == {"n_trials": 20}
    assert "pw" not in sweep_yaml.read_text() and "abc" not in sweep_yaml.read_text()


@pytest.mark.slow
@pytest.mark.parametrize("enabled", [True, False])
def test_system_metrics_are_sampled_unless_switched_off(store_uri, client, tmp_path, monkeypatch, enabled):
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.5")
    run = tiny_run(store_uri, "unit-system")
    run.tracking.system_metrics = enabled
    hydra_files(tmp_path)
    tracker = start_tracking(run, JobContext(), tmp_path, config_hash(run))
    tracker.start(RunInfo(device="cpu (2 threads)", dtype="fp32", compiled=False, params=1,
                          non_embedding_params=1, flops_per_token=6, tokens_per_step=128,
                          peak_flops=None, world_size=2))
    time.sleep(2.0)
    tracker.finish("FINISHED", summary={"val_loss": 1.0})
    got = client.get_run(tracker.run_id)
    assert got.data.params["world_size"] == "2"
    sampled = {key for key in got.data.metrics if key.startswith("system/")}
    assert ("system/cpu_utilization_percentage" in sampled) == enabled
    assert bool(sampled) == enabled


def test_mlflow_info_lines_go_to_the_log_file_not_the_console(tmp_path, capfd):
    """MLflow's own console handler (installed when mlflow is imported, as this module does)
    shows warnings only; its INFO lines land in the log file a Hydra job keeps (a root FileHandler)."""
    root, logger = logging.getLogger(), logging.getLogger("mlflow")
    log_file = logging.FileHandler(tmp_path / "job.log")
    root.addHandler(log_file)
    try:
        route_mlflow_logs()
        logging.getLogger("mlflow.system_metrics").info("Stopping system metrics monitoring...")
        logging.getLogger("mlflow.store").warning("a warning still shows")
        log_file.flush()
    finally:
        root.removeHandler(log_file)
        logger.removeHandler(log_file)
        log_file.close()
    console = capfd.readouterr()
    assert "Stopping system metrics" not in console.err + console.out
    assert "a warning still shows" in console.err + console.out
    assert "Stopping system metrics monitoring" in (tmp_path / "job.log").read_text()
