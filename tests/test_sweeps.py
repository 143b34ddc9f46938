"""Named sweeps and the Optuna sweeper driving the real training app."""
from __future__ import annotations

import functools
import itertools
import math

import optuna
import pytest
import yaml
from hydra import compose, initialize_config_dir

from conftest import TINY, run_app
from llm_sweep.core.config import CONF_DIR, SWEEPS_DIR, register_configs

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
    if name == "isoflop_gpu":  # small models on data=english: its own batch (tests/test_gpu_isoflop.py)
        assert cfg.data.name == "english" and cfg.batch.seq_len == 512
        return
    if name == "isoflop_mup_cpu":  # the clean CPU study: data=english, so no run repeats data
        assert cfg.data.name == "english" and cfg.model.parametrization == "mup"
        return
    assert (cfg.data.name == "shakespeare") == (scale == "cpu")
    assert (cfg.batch.micro_batch_size, cfg.batch.grad_accum, cfg.batch.seq_len) == (
        (16, 1, 128) if scale == "cpu" else (64, 4, 512))


@functools.lru_cache(maxsize=None)
def iso_flop_runs(name: str) -> dict[float, list]:
    """Every run of an iso-FLOP sweep's grid, typed: {budget: [RunConfig per shape]}."""
    from llm_sweep.core.config import load_config

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        params = compose(config_name="config", overrides=[f"+sweep={name}"],
                         return_hydra_config=True).hydra.sweeper.params
        return {float(budget): [load_config(compose(config_name="config", overrides=[
            f"+sweep={name}", f"budget.flops={budget}", f"+shape={shape}"]))
            for shape in params["+shape"].split(",")] for budget in params["budget.flops"].split(",")}


# isoflop_gpu is one fixed-depth family whose grid the corpus caps (tests/test_gpu_isoflop.py).
@pytest.mark.parametrize("name", [name for name in NAMED_SWEEPS if name in ("isoflop", "isoflop_cpu")])
def test_iso_flop_sweeps_bracket_the_reference_ratios_at_every_budget(name):
    from llm_sweep.core.size import flops_per_token, param_count

    grid = iso_flop_runs(name)
    assert len(grid) >= 3 and all(len(runs) >= 5 for runs in grid.values())
    for budget, runs in grid.items():
        assert {(run.budget.time, run.budget.steps, run.budget.tokens) for run in runs} == {(None,) * 3}
        assert len({run.model.n_layer for run in runs}) > 1 and len({run.model.n_embd for run in runs}) > 1
        tokens_per_param = [budget / flops_per_token(run.model, run.batch.seq_len) / param_count(run.model)
                            for run in runs]
        assert min(tokens_per_param) < 6 and max(tokens_per_param) > 20, (budget, tokens_per_param)


def test_the_cpu_iso_flop_sweep_sees_its_corpus_at_most_four_times():
    from llm_sweep.core.size import flops_per_token
    from llm_sweep.data.cache import prepare_dataset

    grid = iso_flop_runs("isoflop_cpu")
    run = grid[min(grid)][0]
    assert run.data.tokenizer == "bytes" and run.model.vocab_size == 320
    corpus = len(prepare_dataset(run.data, progress=False).train)
    epochs = max(budget / flops_per_token(run.model, run.batch.seq_len) / corpus
                 for budget, runs in grid.items() for run in runs)
    assert epochs <= 4


SHAPE_SWEEPS = ("width_vs_depth", "width_vs_depth_cpu", "isoflop", "isoflop_cpu")


def grid_jobs(params) -> list[list[str]]:
    """The overrides of every job of a basic sweeper's grid."""
    axes = [[f"{key}={value.strip()}" for value in str(values).split(",")] for key, values in params.items()]
    return [list(job) for job in itertools.product(*axes)]


@pytest.mark.parametrize("name", SHAPE_SWEEPS)
def test_every_shape_sweep_documents_one_transferred_lr_that_every_job_takes(name):
    """The sweep file's fair variant (a parametrization that transfers one tuned lr) composes
    for every job of its grid: the +shape presets' own lrs give way to the one given."""
    from llm_sweep.core.config import load_config

    prefix = f"#   python -m llm_sweep --multirun +sweep={name} model.parametrization="
    [line] = [line for line in (SWEEPS_DIR / f"{name}.yaml").read_text().splitlines() if line.startswith(prefix)]
    transfer = line.split(f"+sweep={name} ")[1].split()
    lr = float(next(o for o in transfer if o.startswith("optim.lr=")).split("=")[1])
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        params = compose(config_name="config", overrides=[f"+sweep={name}"], return_hydra_config=True
                         ).hydra.sweeper.params
        runs = [load_config(compose(config_name="config", overrides=[f"+sweep={name}", *job, *transfer]))
                for job in grid_jobs(params)]
    assert len(runs) >= 5 and len({(run.model.n_layer, run.model.n_embd) for run in runs}) >= 5
    assert {run.model.parametrization for run in runs} == {"completep"}
    assert {run.optim.lr for run in runs} == {lr}
    # Both width and depth vary, so the depth transfer is needed: completep, not mup.
    assert len({run.model.n_layer for run in runs}) > 1 and len({run.model.n_embd for run in runs}) > 1


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


def test_the_clean_cpu_study_is_one_family_one_lr_and_repeats_no_data():
    """sweeps/isoflop_mup_cpu.yaml's three commands: 7 widths per budget at fixed depth and
    heads, one muP lr, every run under one pass over data=english (tests/test_english_corpus)."""
    from llm_sweep.core.config import load_config
    from llm_sweep.core.size import flops_per_token
    from test_english_corpus import TRAIN_BYTES

    name = "isoflop_mup_cpu"
    prefix = f"#   python -m llm_sweep --multirun +sweep={name}"
    commands = [line[len(prefix):].split() for line in (SWEEPS_DIR / f"{name}.yaml").read_text().splitlines()
                if line.startswith(prefix)]
    runs = []
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        for extra in commands:
            params = compose(config_name="config", overrides=[f"+sweep={name}"],
                             return_hydra_config=True).hydra.sweeper.params
            params = {**params, **dict(o.split("=", 1) for o in extra)}  # the command's own grid
            runs += [load_config(compose(config_name="config", overrides=[f"+sweep={name}", *job]))
                     for job in grid_jobs(params)]
    budgets = sorted({run.budget.flops for run in runs})
    assert len(commands) == 4 and budgets == [1e12, 4e12, 8e12] and len(runs) == 27
    assert {(run.model.n_layer, run.model.n_head, run.model.parametrization, run.optim.lr)
            for run in runs} == {(2, 2, "mup", 2e-3)}
    per_budget = {c: sorted((r.model.n_embd, r.seed) for r in runs if r.budget.flops == c) for c in budgets}
    assert all(len({width for width, _ in jobs}) == 7 for jobs in per_budget.values())
    assert sorted(seed for _, seed in per_budget[1e12]) == [1] * 3 + [2] * 3 + [1337] * 7
    for run in runs:
        tokens = run.budget.flops / flops_per_token(run.model, run.batch.seq_len)
        assert tokens < TRAIN_BYTES, (run.budget.flops, run.model.n_embd, tokens)


@pytest.mark.slow
def test_a_job_refused_its_folder_is_reported_failed_not_as_the_other_runs_result(tmp_path):
    """A second sweep into a folder of another config's finished jobs: each job refuses its
    folder, and the table says so instead of showing the earlier run's loss as its own."""
    sweep = ["--multirun", *TINY, "hydra.sweep.dir=sweep"]
    first = run_app([*sweep, "model.n_embd=64"], tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    second = run_app([*sweep, "model.n_embd=128"], tmp_path)
    assert "holds a run with a different config" in second.stderr
    table = (tmp_path / "sweep" / "sweep_results.md").read_text()
    (row,) = [line for line in table.splitlines() if line.startswith("| 0 |")]
    assert "| failed | - |" in row and "model.n_embd=128" in row and "holds a run with a different config" in row
    assert "0/1 jobs finished" in second.stdout
