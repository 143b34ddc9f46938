"""`python -m llm_sweep` as users run it: real Hydra processes.

Each command runs in a process of its own, forked from one that has imported torch, MLflow
and llm_sweep (tests/fixtures/c_fork_server.py), which spares each the seconds of those
imports; the wheel's check in CI (.ci/wheel_check.sh) starts the installed command afresh."""
from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from conftest import TINY
from fixtures.c_fork_server import TRACKED, ForkServer


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> ForkServer:
    """Runs `python -m llm_sweep` in a process forked from one that has done the imports
    (the compiler's too: the quick start compiles)."""
    server = ForkServer([*TRACKED, "torch._inductor.compile_fx"], tmp_path_factory.mktemp("fork_server"))
    yield server
    server.close()


@pytest.mark.slow
def test_the_default_command_visibly_learns_and_says_where_its_run_is(tmp_path, app):
    """The quick start as a newcomer sees it (a step budget instead of its 30 s, so the check
    does not depend on the machine: 60 steps end at a val loss of 2.75, measured): the
    default preset (tiny, on bytes, with the quick budget) learns from ln(257) to well under 3
    with eval lines on the way, each silent phase is announced, and the closing lines name
    the run folder, the MLflow command and address for its store, and the command again."""
    result = app.run(["budget.time=null", "budget.steps=60", "eval.interval=30", "eval.final_batches=8"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "compiling the model" in out and "compiled in " in out
    assert "step 30: val/loss" in out and "evaluating on the validation split (8 batches of 16 x 128 tokens)" in out
    (run_dir,) = (tmp_path / "outputs").glob("*/*")
    choices = yaml.safe_load((run_dir / ".hydra" / "hydra.yaml").read_text())["hydra"]["runtime"]["choices"]
    assert {group: choices[group] for group in ("model", "budget", "batch", "data")} == {
        "model": "tiny", "budget": "quick", "batch": "cpu", "data": "shakespeare"}
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train/loss"] for r in records if "train/loss" in r]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["model"] == "tiny" and summary["params"] < 600_000  # a 320-row embedding (257 ids, padded)
    assert losses[0] > 4.5 and summary["val_loss"] < 3.0  # the first 10 steps start at ln(257) = 5.55
    lines = out.splitlines()
    folder = next(line for line in lines if line.startswith("run folder "))
    assert folder.startswith(f"run folder {run_dir.relative_to(tmp_path)}/")
    mlflow_line = next(line for line in lines if line.startswith("MLflow "))
    experiment = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_experiment_by_name("llm_sweep")
    assert (f"mlflow ui --backend-store-uri sqlite:///{tmp_path.resolve() / 'mlflow.db'}, then open "
            f"http://127.0.0.1:5000/#/experiments/{experiment.experiment_id}/runs?"
            "orderByKey=metrics.%60final%2Fval_loss%60&orderByAsc=true") in mlflow_line
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # opens on its runs
    assert lines[-1] == "run again  python -m llm_sweep budget.time=null budget.steps=60 eval.interval=30 eval.final_batches=8"
    assert "[mlflow" not in out and "matplotlib" not in out  # libraries' INFO lines: the log file
    assert "[mlflow.store.db.utils][INFO]" in (run_dir / "llm_sweep.log").read_text()


@pytest.mark.slow
def test_seed_final_config_is_shown_by_cfg_job(tmp_path, app):
    result = app.run(["model=wide3", "optim=adamw", "batch=a100", "--cfg", "job"], tmp_path)
    assert result.returncode == 0, result.stderr
    for line in ["n_layer: 10", "n_head: 16", "n_embd: 1024", "micro_batch_size: 64",
                 "grad_accum: 4", "seq_len: 512", "grad_clip: 1.0"]:
        assert line in result.stdout


@pytest.mark.parametrize("override, message", [
    ("model.n_head=3", "error: model.n_embd=128 is not divisible by model.n_head=3"),
    ("device=tpu", "error: device='tpu' is not one of auto, cpu, cuda"),
    ("batch.seq_len=1024", "error: batch.seq_len=1024 exceeds model.max_seq_len=256"),
    ("budget.time=0", "error: budget.time='0' is not allowed: must be a duration > 0, "
                      "e.g. 3h, 90m, 45s or a number of seconds"),
])
@pytest.mark.slow
def test_bad_input_fails_with_one_clear_line(tmp_path, app, override, message):
    result = app.run([override, "tracking=none", "hydra.run.dir=run"], tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == message
    assert "Traceback" not in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("override", ["model.n_embdd=3", "+model.n_embdd=3"])
def test_typo_in_a_key_names_it_before_any_compute(tmp_path, app, override):
    """With or without `+` (which Hydra would accept beside the schema's key, and the run then
    ignore): one line, exit 2, the nearest real key, nothing written."""
    result = app.run([override, "tracking=mlflow"], tmp_path)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: model.n_embdd is not a config key: did you mean model.n_embd?")
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "mlflow.db").exists()


@pytest.mark.slow
def test_sweep_survives_a_failing_job_and_skips_finished_jobs_on_rerun(tmp_path, app):
    args = ["--multirun", *TINY, "model.n_head=1,3", "hydra.sweep.dir=sweep"]
    first = app.run(args, tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "1/2 jobs finished" in first.stdout
    assert "| 1 | failed | - | model.n_head=3 | model.n_embd=64 is not divisible" in first.stdout
    table = (tmp_path / "sweep" / "sweep_results.md").read_text()
    assert "| 0 | finished |" in table
    second = app.run(args, tmp_path)
    assert "already finished" in second.stdout and "model tiny" not in second.stdout


@pytest.mark.slow
def test_sweep_where_every_job_fails_exits_non_zero(tmp_path, app):
    result = app.run(["--multirun", *TINY, "model.n_head=3,5", "hydra.sweep.dir=sweep"], tmp_path)
    assert result.returncode == 1
    assert "every job of the sweep failed" in result.stderr


def _train_until_interrupted(app: ForkServer, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Start a run, Ctrl-C it once it is training (its progress bar shows a loss), wait. The
    forked process has Python's own Ctrl-C handler, whatever this process does with SIGINT
    (an xdist worker ignores it)."""
    err = cwd / "stderr.txt"
    proc = app.start(args, cwd, stdout=cwd / "stdout.txt", stderr=err)
    deadline = time.monotonic() + 240
    while "loss " not in err.read_text() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=240)
    return proc.completed()


@pytest.mark.slow
def test_ctrl_c_saves_and_the_printed_command_resumes_to_the_same_final_loss(tmp_path, app):
    """Ctrl-C finishes the step, saves a checkpoint, marks the run killed and prints one line
    with the command that resumes it; that command continues the same folder and MLflow run
    to the final loss of a run never interrupted (a step budget: the data and RNG states are
    a function of the step)."""
    # 300 steps: some 2 s of training left when the first loss shows, for the Ctrl-C to land in
    base = [*[a for a in TINY if not a.startswith(("budget.steps", "tracking"))], "budget.steps=300"]
    (tmp_path / "a").mkdir()
    stopped = _train_until_interrupted(app, [*base, "tracking=mlflow", "hydra.run.dir=run"], tmp_path / "a")
    assert stopped.returncode == 130, stopped.stderr[-2000:]
    (line,) = [line for line in stopped.stdout.splitlines() if line.startswith("interrupted: ")]
    assert "Traceback" not in stopped.stderr and "on request (Ctrl-C); checkpoint saved" in line
    command = line.split("Resume it (same folder, same MLflow run): ")[1]
    assert command.startswith("python -m llm_sweep ") and f"hydra.run.dir={tmp_path / 'a' / 'run'}" in command
    status = json.loads((tmp_path / "a" / "run" / "status.json").read_text())
    assert status["status"] == "killed" and list((tmp_path / "a" / "run" / "checkpoints").glob("*.pt"))
    resumed = app.run(command.split()[3:], tmp_path / "a")
    assert resumed.returncode == 0 and "resumed at step" in resumed.stdout, resumed.stderr[-2000:]
    (tmp_path / "b").mkdir()
    straight = app.run([*base, "tracking=none", "hydra.run.dir=run"], tmp_path / "b")
    assert straight.returncode == 0, straight.stderr[-2000:]
    final = lambda folder: json.loads((folder / "run" / "summary.json").read_text())["val_loss"]
    assert final(tmp_path / "a") == pytest.approx(final(tmp_path / "b"), rel=1e-6)
    client = MlflowClient(f"sqlite:///{tmp_path / 'a' / 'mlflow.db'}")
    (run,) = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    assert run.info.status == "FINISHED"


@pytest.mark.slow
def test_ctrl_c_stops_a_sweep_and_its_printed_command_resumes_the_interrupted_job(tmp_path, app):
    """Ctrl-C during a sweep's first job: that job is saved and killed, the sweep stops, and
    the printed command (the sweep's, pinned to its folder) resumes that job from its
    checkpoint and runs the rest."""
    base = [*[a for a in TINY if not a.startswith("budget.steps")], "budget.steps=150"]
    stopped = _train_until_interrupted(app, ["--multirun", *base, "model.n_layer=1,2", "hydra.sweep.dir=sweep"],
                                       tmp_path)
    assert stopped.returncode == 130, stopped.stderr[-2000:]
    (line,) = [line for line in stopped.stdout.splitlines() if line.startswith("interrupted: ")]
    command = line.split("Resume it (same folder, same MLflow run): ")[1]
    assert command.startswith("python -m llm_sweep --multirun ") and "hydra.sweep.dir=sweep" in command
    assert json.loads((tmp_path / "sweep" / "0" / "status.json").read_text())["status"] == "killed"
    assert not (tmp_path / "sweep" / "1").exists()
    resumed = app.run(command.split()[3:], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed at step" in resumed.stdout and "2/2 jobs finished" in resumed.stdout
