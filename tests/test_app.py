"""`python -m llm_sweep` as users run it: real Hydra processes."""
from __future__ import annotations

import json
import math

import pytest

from conftest import TINY, run_app


@pytest.mark.slow
def test_default_command_trains_tiny_and_prints_the_summary(tmp_path):
    # The default command, with a step budget so the check does not depend on machine speed.
    result = run_app(["budget.time=null", "budget.steps=20", "eval.final_batches=4",
                      "hydra.run.dir=run"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "final val  loss" in result.stdout
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["model"] == "tiny" and summary["binding_budget"] == "steps"
    assert summary["val_loss"] < math.log(50304) - 1.5
    assert json.loads((tmp_path / "run" / "status.json").read_text())["status"] == "finished"


@pytest.mark.slow
def test_seed_final_config_is_shown_by_cfg_job(tmp_path):
    result = run_app(["model=wide3", "optim=adamw", "batch=a100", "--cfg", "job"], cwd=tmp_path)
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
def test_bad_input_fails_with_one_clear_line(tmp_path, override, message):
    result = run_app([override, "tracking=none", "hydra.run.dir=run"], cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == message
    assert "Traceback" not in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("override", ["model.n_embdd=3", "+model.n_embdd=3"])
def test_typo_in_a_key_names_it_before_any_compute(tmp_path, override):
    """With or without `+` (which Hydra would accept beside the schema's key, and the run then
    ignore): one line, exit 2, the nearest real key, nothing written."""
    result = run_app([override, "tracking=mlflow"], cwd=tmp_path)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: model.n_embdd is not a config key: did you mean model.n_embd?")
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "mlflow.db").exists()


@pytest.mark.slow
def test_sweep_survives_a_failing_job_and_skips_finished_jobs_on_rerun(tmp_path):
    args = ["--multirun", *TINY, "model.n_head=1,3", "hydra.sweep.dir=sweep"]
    first = run_app(args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "1/2 jobs finished" in first.stdout
    assert "| 1 | failed | - | model.n_head=3 | model.n_embd=64 is not divisible" in first.stdout
    table = (tmp_path / "sweep" / "sweep_results.md").read_text()
    assert "| 0 | finished |" in table
    second = run_app(args, cwd=tmp_path)
    assert "already finished" in second.stdout and "model tiny" not in second.stdout


@pytest.mark.slow
def test_sweep_where_every_job_fails_exits_non_zero(tmp_path):
    result = run_app(["--multirun", *TINY, "model.n_head=3,5", "hydra.sweep.dir=sweep"],
                     cwd=tmp_path)
    assert result.returncode == 1
    assert "every job of the sweep failed" in result.stderr
