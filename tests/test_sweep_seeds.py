"""`sweep.seeds=N` through the real command line: the dry run lists and counts the seeded
jobs, a real sweep runs them at their seeds, and every misuse is one `error:` line naming
the key, with exit code 2. The commands run one after another in one process
(tests/fixtures/one_process.py). The dry runs price their jobs for a GPU (device=cuda): on
the CPU a dry run would first time each shape here, which tests/test_dry_run_costs.py checks."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import TINY, run_in_processes
from llm_sweep.core.config import SweepConfig
from llm_sweep.core.errors import ConfigError
from llm_sweep.core.rules import check
from llm_sweep.sweeping.seeds import seed_range

DRY = "sweep.dry_run=true tracking=none device=cuda"
SHOWN = "tracking=none device=cuda"  # what each job line shows of DRY (sweep.dry_run is left out)
# (what the user types, what the error line must say after "error: sweep.seeds")
REFUSED = [
    ("--multirun sweep.seeds=0", "=0 is not allowed: must be >= 1"),
    ("sweep.seeds=2", "=2 repeats the jobs of a sweep: add --multirun"),
    ("--multirun seed=1,2 sweep.seeds=2", "=2 sweeps seed, and the sweep already does (seed=1,2)"),
    ("--multirun +sweep=width_vs_depth_cpu +hydra.sweeper.params.seed=\"1,2\" sweep.seeds=2",
     "=2 sweeps seed, and the sweep already does (seed=1,2)"),
    ("--multirun sweep.seeds=2,3", " takes one number >= 1, not a sweep (sweep.seeds=2,3)"),
]
# An Optuna study: each trial at every seed (its value their mean), which a pruner cannot judge.
OPTUNA_SEEDED = "--multirun +sweep=lr_search_cpu sweep.seeds=3 hydra.sweeper.pruner=null"
OPTUNA_PRUNED = "--multirun +sweep=lr_search_cpu sweep.seeds=3"
# A real sweep of two seeds: two jobs of two training steps.
REAL = " ".join(["--multirun", *TINY, "budget.steps=2", "sweep.seeds=2"])
LISTED = [
    "--multirun model.n_embd=64,128 sweep.seeds=3",
    "--multirun model.n_embd=64,128 sweep.seeds=1",
    "--multirun model.n_embd=64,128",
    "--multirun +sweep=width_vs_depth_cpu seed=7 sweep.seeds=2",
]


@pytest.fixture(scope="module")
def cli(tmp_path_factory) -> dict[str, dict]:
    """Every dry run and refusal, and the real sweep, run once, one after another in one process
    (tests/fixtures/one_process.py): {typed: {rc, out, cwd}}, `out` being stdout and stderr together."""
    root = tmp_path_factory.mktemp("seeds")
    typed = LISTED + [case for case, _ in REFUSED] + [OPTUNA_SEEDED, OPTUNA_PRUNED]
    jobs = []
    for index, case in enumerate([*typed, REAL]):
        (root / str(index)).mkdir()
        args = [*case.split(), *(DRY.split() if case != REAL else []), "hydra.sweep.dir=sweep"]
        jobs.append({"module": "llm_sweep", "cwd": str(root / str(index)), "args": args})
    results = run_in_processes(jobs, root, processes=1)
    return {case: {**result, "cwd": Path(job["cwd"])} for case, job, result in zip([*typed, REAL], jobs, results)}


def job_lines(stdout: str) -> list[str]:
    return re.findall(r"^#\d+ : .*$", stdout, flags=re.M)


@pytest.mark.slow
def test_the_dry_run_lists_every_combination_at_every_seed_seed_outermost(cli):
    result = cli[LISTED[0]]
    assert result["rc"] == 0, result["out"][-2000:]
    assert "6 job(s):" in result["out"] and "Total: 6 job(s)" in result["out"]
    assert job_lines(result["out"]) == [
        f"#{2 * i + j} : seed={seed} model.n_embd={width} {SHOWN}"
        for i, seed in enumerate((1337, 1338, 1339)) for j, width in enumerate((64, 128))]


@pytest.mark.slow
def test_one_seed_is_the_sweep_as_it_was(cli):
    once, plain = cli[LISTED[1]], cli[LISTED[2]]
    assert once["rc"] == plain["rc"] == 0
    assert job_lines(plain["out"]) == [f"#0 : model.n_embd=64 {SHOWN}", f"#1 : model.n_embd=128 {SHOWN}"]
    assert job_lines(once["out"]) == [line.replace(SHOWN, f"sweep.seeds=1 {SHOWN}")
                                      for line in job_lines(plain["out"])]


@pytest.mark.slow
def test_a_named_sweep_repeats_its_grid_from_the_given_base_seed(cli):
    result = cli[LISTED[3]]
    assert result["rc"] == 0, result["out"][-2000:]
    lines = job_lines(result["out"])
    assert len(lines) == 12 and "Total: 12 job(s)" in result["out"]  # 3 depths x 2 widths x 2 seeds
    assert all(" seed=7 " in line for line in lines[:6]) and all(" seed=8 " in line for line in lines[6:])
    assert [line.split(" seed=")[1].split(" ", 1)[1] for line in lines[:6]] == \
           [line.split(" seed=")[1].split(" ", 1)[1] for line in lines[6:]]  # the same grid twice
    assert all(line.count("seed=") == 1 for line in lines)  # the base seed=7 is not a second override


@pytest.mark.slow
@pytest.mark.parametrize("typed, says", REFUSED, ids=[typed for typed, _ in REFUSED])
def test_misuse_is_one_line_naming_the_key_with_exit_code_2(cli, typed, says):
    result = cli[typed]
    assert result["rc"] == 2, result["out"][-2000:]
    assert "Traceback" not in result["out"] and "Dry run" not in result["out"]
    assert result["out"].strip().splitlines()[-1].startswith("error: sweep.seeds" + says)


@pytest.mark.slow
def test_an_optuna_study_runs_each_trial_at_every_seed_and_refuses_a_pruner(cli):
    seeded = cli[OPTUNA_SEEDED]
    assert seeded["rc"] == 0, seeded["out"][-3000:]
    assert "8 to run, 1 at a time in batches; each trial 3 jobs, seeds 1337, 1338, 1339, its value their mean" \
        in seeded["out"]
    pruned = cli[OPTUNA_PRUNED]
    assert pruned["rc"] == 2, pruned["out"][-3000:]
    assert pruned["out"].strip().splitlines()[-1].startswith(
        "error: hydra.sweeper.seeds=[1337, 1338, 1339] runs each trial at 3 seeds and judges their mean")


@pytest.mark.slow
def test_a_real_sweep_runs_each_job_at_its_seed(cli):
    result = cli[REAL]
    assert result["rc"] == 0, result["out"][-3000:]
    jobs = [result["cwd"] / "sweep" / str(num) for num in (0, 1)]
    assert [OmegaConf.load(job / ".hydra" / "config.yaml").seed for job in jobs] == [1337, 1338]
    overrides = [list(OmegaConf.load(job / ".hydra" / "overrides.yaml")) for job in jobs]
    assert [o[0] for o in overrides] == ["seed=1337", "seed=1338"]
    assert not any("sweep.seeds" in x for o in overrides for x in o)  # each job is one seed
    assert "2/2 jobs finished" in result["out"]


def test_the_seeds_run_from_the_base_within_the_seed_rule():
    assert seed_range(1337, 3) == [1337, 1338, 1339]
    assert seed_range(2**32 - 2, 2) == [2**32 - 2, 2**32 - 1]
    with pytest.raises(ConfigError, match=r"^sweep\.seeds=3 from seed=4294967294 would run seed=4294967296"):
        seed_range(2**32 - 2, 3)
    with pytest.raises(ConfigError, match=r"^seed=-1 is not allowed: must be >= 0"):
        seed_range(-1, 2)


def test_the_key_is_declared_with_its_rule():
    assert SweepConfig().seeds == 1
    with pytest.raises(ConfigError, match=r"^sweep\.seeds=0 is not allowed: must be >= 1$"):
        check(SweepConfig(seeds=0), "sweep.")
