"""Named sweeps and the Optuna sweeper driving the real training app."""
from __future__ import annotations

import math

import optuna
import pytest
import yaml
from hydra import compose, initialize_config_dir

from conftest import TINY, run_app
from llm_sweep.config import CONF_DIR, SWEEPS_DIR, register_configs

register_configs()
NAMED_SWEEPS = sorted(p.stem for p in SWEEPS_DIR.glob("*.yaml"))


@pytest.mark.parametrize("name", NAMED_SWEEPS)
def test_every_named_sweep_composes_with_its_search_space(name):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = compose(config_name="config", overrides=[f"+sweep={name}"], return_hydra_config=True)
    assert cfg.hydra.sweep.dir == f"multirun/{name}"
    assert cfg.tracking.experiment == name
    assert len(cfg.hydra.sweeper.params) >= 1
    scale = "cpu" if name.endswith("_cpu") else "gpu"
    assert (cfg.data.name == "shakespeare") == (scale == "cpu")
    assert (cfg.batch.micro_batch_size, cfg.batch.grad_accum, cfg.batch.seq_len) == (
        (16, 1, 128) if scale == "cpu" else (64, 4, 512))


@pytest.mark.slow
def test_optuna_sweep_of_the_app_continues_its_study(tmp_path):
    storage = f"sqlite:///{tmp_path}/optuna.db"
    args = ["--multirun", "+sweep=lr_search_cpu", *TINY, "hydra.sweeper.n_jobs=2",
            f"hydra.sweeper.storage={storage}", f"hydra.sweep.dir={tmp_path}/sweep"]
    first = run_app([*args, "hydra.sweeper.n_trials=2"], cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    again = run_app([*args, "hydra.sweeper.n_trials=3"], cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    study = optuna.load_study(study_name="lr_search_cpu", storage=storage)
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 3
    assert all(3e-4 <= t.params["optim.lr"] <= 1e-2 and math.isfinite(t.value) for t in trials)
    results = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    assert results["best_value"] == pytest.approx(study.best_value)


@pytest.mark.slow
def test_a_two_by_two_grid_runs_four_jobs_as_four_mlflow_children(tmp_path):
    from mlflow.tracking import MlflowClient

    tiny = [o for o in TINY if o != "tracking=none"]
    result = run_app(["--multirun", *tiny, "model.n_embd=64,128", "optim.lr=1e-3,3e-3",
                      "tracking.experiment=grid", "hydra.sweep.dir=sweep"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "4/4 jobs finished" in result.stdout
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("grid").experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 4
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    assert {(r.data.params["model.n_embd"], r.data.params["optim.lr"]) for r in children} == {
        ("64", "0.001"), ("64", "0.003"), ("128", "0.001"), ("128", "0.003")}
    assert all(r.info.status == "FINISHED" for r in children)
