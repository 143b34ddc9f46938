"""Named sweeps and the Optuna sweeper driving the real training app; a grid and a named
sweep whose real runs are compared with their dry runs; the dry run of an Optuna sweep and
a sweep's GPU-hour limit.

The named sweeps' grids are composed in this process. A job's config group choices
(`+shape=...`) are composed once per choice, and its value overrides (`budget.flops=...`)
applied to a copy by Hydra's own override step, the one `compose` takes after the defaults
list; one job per sweep is checked against a whole `compose`. The real sweeps and dry runs
are the CLI, `python -m llm_sweep ...`, each command run once, one after another in one
process that pays the imports once (tests/fixtures/b_cli_batch.py).
"""
from __future__ import annotations

import copy
import functools
import itertools
import math
import os
import re
from pathlib import Path

import optuna
import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from conftest import TINY
from fixtures.b_cli_batch import Ran, command, run_commands
from llm_sweep.core.config import CONF_DIR, SWEEPS_DIR, register_configs

register_configs()
NAMED_SWEEPS = sorted(p.stem for p in SWEEPS_DIR.glob("*.yaml"))
# A job that still trains, evaluates and records, at the least cost: 2 steps, one final batch.
CHEAP = [o for o in TINY if not o.startswith(("budget.steps", "eval.final_batches"))] + [
    "budget.steps=2", "eval.final_batches=1"]
_BASES: dict[tuple, object] = {}  # composed config group choices: (sweep, group overrides) -> config
_CHECKED: set[str] = set()  # sweeps whose shortcut was checked against a whole compose


def compose_jobs(name: str, jobs: list[list[str]]) -> list:
    """Each job's config (`+sweep=<name>` plus its overrides), typed, as Hydra composes it."""
    from llm_sweep.core.config import load_config

    parser = OverridesParser.create()
    configs = []
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        repo = GlobalHydra.instance().config_loader().repository
        for job in jobs:
            overrides = parser.parse_overrides([f"+sweep={name}", *job])
            # Hydra's own split (hydra/_internal/defaults_list.py, Overrides): a value or a group.
            is_value = [isinstance(o.value(), dict) or not repo.group_exists(o.key_or_group) for o in overrides]
            values = [o for o, value in zip(overrides, is_value) if value]
            groups = tuple(o.input_line for o, value in zip(overrides, is_value) if not value)
            if (name, groups) not in _BASES:
                _BASES[name, groups] = compose(config_name="config", overrides=list(groups))
            cfg = copy.deepcopy(_BASES[name, groups])
            ConfigLoaderImpl._apply_overrides_to_config(values, cfg)
            if name not in _CHECKED and values:
                whole = compose(config_name="config", overrides=[f"+sweep={name}", *job])
                assert OmegaConf.to_container(cfg) == OmegaConf.to_container(whole), job
                _CHECKED.add(name)
            configs.append(load_config(cfg))
    return configs


@functools.lru_cache(maxsize=None)
def named_sweep(name: str):
    """`+sweep=<name>` composed, with its Hydra config (read only: it is shared)."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = compose(config_name="config", overrides=[f"+sweep={name}"], return_hydra_config=True)
    OmegaConf.set_readonly(cfg, True)
    return cfg


@pytest.mark.parametrize("name", NAMED_SWEEPS)
def test_every_named_sweep_composes_with_its_search_space(name):
    cfg = named_sweep(name)
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


def sweep_params(name: str) -> dict:
    """The named sweep's `hydra.sweeper.params`."""
    return OmegaConf.to_container(named_sweep(name).hydra.sweeper.params)


@functools.lru_cache(maxsize=None)
def iso_flop_runs(name: str) -> dict[float, list]:
    """Every run of an iso-FLOP sweep's grid, typed: {budget: [RunConfig per shape]}."""
    params = sweep_params(name)
    shapes = params["+shape"].split(",")
    return {float(budget): compose_jobs(name, [[f"budget.flops={budget}", f"+shape={shape}"] for shape in shapes])
            for budget in params["budget.flops"].split(",")}


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
    """The sweep file's fair variant (CompleteP transferring one tuned lr: given as optim.lr,
    or with the base constants by a tuned base's overlay, +mup=<name>) composes for every job
    of its grid: the +shape presets' own lrs give way to the one transferred."""
    prefix = f"#   python -m llm_sweep --multirun +sweep={name} "
    [line] = [line for line in (SWEEPS_DIR / f"{name}.yaml").read_text().splitlines()
              if line.startswith(prefix) and "model.parametrization=completep" in line]
    transfer = line.split(f"+sweep={name} ")[1].split()
    runs = compose_jobs(name, [[*job, *transfer] for job in grid_jobs(sweep_params(name))])
    assert len(runs) >= 5 and len({(run.model.n_layer, run.model.n_embd) for run in runs}) >= 5
    assert {run.model.parametrization for run in runs} == {"completep"}
    overlays = [o.split("=")[1] for o in transfer if o.startswith("+mup=")]
    if overlays:
        base = OmegaConf.load(CONF_DIR / "mup" / f"{overlays[0]}.yaml")
        assert {run.optim.lr for run in runs} == {base.optim.lr}
        assert {run.model.output_mult for run in runs} == {base.model.output_mult}
        assert {run.model.base_tuned_by for run in runs} == {base.model.base_tuned_by} != {None}
    else:
        assert {run.optim.lr for run in runs} == {float(next(o for o in transfer if o.startswith("optim.lr=")).split("=")[1])}
    # Both width and depth vary, so the depth transfer is needed: completep, not mup.
    assert len({run.model.n_layer for run in runs}) > 1 and len({run.model.n_embd for run in runs}) > 1


def test_the_clean_cpu_study_is_one_family_one_lr_and_repeats_no_data():
    """sweeps/isoflop_mup_cpu.yaml's three commands: 7 widths per budget at fixed depth and
    heads, one muP lr, every run under one pass over data=english (tests/test_english_corpus)."""
    from llm_sweep.core.size import flops_per_token
    from test_english_corpus import TRAIN_BYTES

    name = "isoflop_mup_cpu"
    prefix = f"#   python -m llm_sweep --multirun +sweep={name}"
    commands = [line[len(prefix):].split() for line in (SWEEPS_DIR / f"{name}.yaml").read_text().splitlines()
                if line.startswith(prefix)]
    runs = []
    for extra in commands:
        params = {**sweep_params(name), **dict(o.split("=", 1) for o in extra)}  # the command's own grid
        runs += compose_jobs(name, grid_jobs(params))
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



# --- the real app's sweeps, run once, in one process ------------------------------------------

GRID = ["--multirun", *[o for o in CHEAP if o != "tracking=none"], "model.n_embd=64,128", "optim.lr=1e-3,3e-3",
        "tracking.experiment=grid", "hydra.sweep.dir=sweep"]
# A named sweep's grid comes from hydra.sweeper.params (here narrowed to two of its widths); 1 step.
NAMED = ["--multirun", *[o for o in CHEAP if not o.startswith(("model.n_embd", "budget.steps"))], "budget.steps=1",
         "+sweep=tokens_per_param_cpu", "hydra.sweeper.params={model.n_embd:'64,128'}", "hydra.sweep.dir=sweep"]
QUICK = [o for o in CHEAP if not o.startswith("budget.steps")] + ["budget.steps=1"]
LR_SEARCH = ["--multirun", "+sweep=lr_search_cpu", *CHEAP, "hydra.sweeper.n_jobs=2"]
# Its dry run adds a parameter on the command line and fixes two of the sweep's: 4 corners to compose, not 16.
LR_SEARCH_DRY = ["--multirun", "+sweep=lr_search_cpu", *QUICK, "model.n_layer=1,2", "schedule.warmup_frac=0.05",
                 "optim.weight_decay=0.1", "hydra.sweep.dir=sweep", "sweep.dry_run=true"]
# 2 jobs of 2 h of training on a GPU, against a limit of 3 GPU-hours.
TOO_LARGE = ["--multirun", *[o for o in QUICK if o != "tracking=none"], "budget.steps=null", "budget.time=2h",
             "device=cuda", "model.n_embd=64,128", "hydra.sweep.dir=sweep", "sweep.max_gpu_hours=3"]


def commands(root: Path) -> dict[str, tuple[str, list[str]]]:
    """The tests' commands, in the order they run: {name: (folder under root, args)}."""
    lr_search = [*LR_SEARCH, f"hydra.sweeper.storage=sqlite:///{root}/lr_search/optuna.db",
                 f"hydra.sweep.dir={root}/lr_search/sweep"]
    refused = ["--multirun", *CHEAP, "hydra.sweep.dir=sweep"]
    return {
        "too_large": ("too_large", TOO_LARGE),
        "lr_search_dry_fresh": ("lr_search_dry_fresh", [
            *LR_SEARCH_DRY, f"hydra.sweeper.storage=sqlite:///{root}/lr_search_dry_fresh/optuna.db"]),
        "lr_search_first": ("lr_search", [*lr_search, "hydra.sweeper.n_trials=1"]),
        "lr_search_dry": ("lr_search_dry", [*LR_SEARCH_DRY, f"hydra.sweeper.storage=sqlite:///{root}/lr_search/optuna.db"]),
        "lr_search_again": ("lr_search", [*lr_search, "hydra.sweeper.n_trials=2"]),
        "refused_first": ("refused", [*refused, "model.n_embd=64"]),
        "refused": ("refused", [*refused, "model.n_embd=128"]),
        "named_dry": ("named_dry", [*NAMED, "sweep.dry_run=true"]),
        "named": ("named", NAMED),
        "grid_dry": ("grid_dry", [*GRID, "sweep.dry_run=true"]),  # tracked, as the real run
        "grid": ("grid", GRID),  # last: the one command that opens an MLflow store
    }


@pytest.fixture(scope="module")
def cli(tmp_path_factory) -> dict[str, tuple[Ran, Path]]:
    """Every command of the tests below, run once as `python -m llm_sweep ...`, one after
    another in one Python process that pays the imports once (tests/fixtures/b_cli_batch.py):
    {name: (its result, the folder it ran in)}."""
    root = tmp_path_factory.mktemp("cli")
    plan = commands(root)
    for folder, _ in plan.values():
        (root / folder).mkdir(exist_ok=True)
    results = run_commands([command(args, root / folder) for folder, args in plan.values()], root)
    return {name: (result, root / folder) for (name, (folder, _)), result in zip(plan.items(), results)}


@pytest.mark.slow
def test_optuna_sweep_of_the_app_continues_its_study(cli):
    (first, folder), (again, _) = cli["lr_search_first"], cli["lr_search_again"]
    assert first.returncode == 0, first.stderr[-3000:]
    assert again.returncode == 0, again.stderr[-3000:]
    study = optuna.load_study(study_name="lr_search_cpu", storage=f"sqlite:///{folder}/optuna.db")
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 2
    assert all(3e-4 <= t.params["optim.lr"] <= 1e-2 and math.isfinite(t.value) for t in trials)
    results = yaml.safe_load((folder / "sweep" / "optimization_results.yaml").read_text())
    assert results["best_value"] == pytest.approx(study.best_value)


@pytest.mark.slow
def test_an_optuna_dry_run_reads_the_study_and_creates_nothing(cli):
    fresh, folder = cli["lr_search_dry_fresh"]
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    assert os.listdir(folder) == []
    assert "0 of 8 trials done, 8 to run" in fresh.stdout
    assert "optim.lr: tag(log, interval(0.0003, 0.01))" in fresh.stdout
    assert "model.n_layer: choice(1, 2)" in fresh.stdout
    assert "Trials are sampled at run time" in fresh.stdout
    continued, _ = cli["lr_search_dry"]  # the study of test_optuna_sweep_of_the_app..., after its first trial
    assert continued.returncode == 0, continued.stderr[-3000:]
    assert "1 of 8 trials done, 7 to run" in continued.stdout
    assert "Total: 7 job(s)" in continued.stdout


@pytest.mark.slow
def test_max_gpu_hours_refuses_a_sweep_that_is_too_large_before_anything_launches(cli):
    result, folder = cli["too_large"]
    assert result.returncode == 2, result.stderr[-3000:]
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: sweep.max_gpu_hours=3: this sweep of 2 job(s) is expected to need "
                           "4.01 GPU-hours")  # 2 h of training each, start-up and evaluations
    assert os.listdir(folder) == []  # no job, no sweep dir, no MLflow parent run


@pytest.mark.slow
def test_a_two_by_two_grid_runs_four_jobs_as_four_mlflow_children(cli):
    from mlflow.tracking import MlflowClient

    result, folder = cli["grid"]
    assert result.returncode == 0, result.stderr[-3000:]
    assert "4/4 jobs finished" in result.stdout
    client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("grid").experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 4
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    assert {(r.data.params["model.n_embd"], r.data.params["optim.lr"]) for r in children} == {
        ("64", "0.001"), ("64", "0.003"), ("128", "0.001"), ("128", "0.003")}
    assert all(r.info.status == "FINISHED" for r in children)


def job_lines(output: str) -> list[str]:
    """The dry run's job list: `#<num> : <overrides>`."""
    return [line for line in output.splitlines() if re.match(r"#\d+ : ", line)]


def launched(sweep_dir: Path) -> list[str]:
    """What a real run launched: each job's overrides, as the dry run lists them."""
    jobs = sorted((p for p in sweep_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    return [f"#{p.name} : " + " ".join(yaml.safe_load((p / ".hydra" / "overrides.yaml").read_text()))
            for p in jobs]


def dry_and_real(cli, name: str) -> tuple[list[str], list[str]]:
    """The jobs the dry run of sweep `name` lists and those its real run launched. The dry
    run's folder stays empty: no sweep dir, no MLflow store."""
    (dry, dry_folder), (real, folder) = cli[f"{name}_dry"], cli[name]
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert os.listdir(dry_folder) == []
    assert "GPU-hours" in dry.stdout and "Throughput: measured on this machine (cpu" in dry.stdout
    assert real.returncode == 0, real.stderr[-3000:]
    return job_lines(dry.stdout), launched(folder / "sweep")


@pytest.mark.slow
def test_the_dry_run_of_a_grid_lists_the_jobs_its_real_run_launched(cli):
    jobs, real_jobs = dry_and_real(cli, "grid")
    assert len(jobs) == 4
    assert jobs == real_jobs


@pytest.mark.slow
def test_the_dry_run_of_a_named_sweep_lists_the_jobs_its_real_run_launches(cli):
    jobs, real_jobs = dry_and_real(cli, "named")
    assert len(jobs) == 2
    assert jobs == real_jobs


@pytest.mark.slow
def test_a_job_refused_its_folder_is_reported_failed_not_as_the_other_runs_result(cli):
    """A second sweep into a folder of another config's finished jobs: each job refuses its
    folder, and the table says so instead of showing the earlier run's loss as its own."""
    (first, folder), (second, _) = cli["refused_first"], cli["refused"]
    assert first.returncode == 0, first.stderr[-2000:]
    assert "holds a run with a different config" in second.stderr
    table = (folder / "sweep" / "sweep_results.md").read_text()
    (row,) = [line for line in table.splitlines() if line.startswith("| 0 |")]
    assert "| failed | - |" in row and "model.n_embd=128" in row and "holds a run with a different config" in row
    assert "0/1 jobs finished" in second.stdout
