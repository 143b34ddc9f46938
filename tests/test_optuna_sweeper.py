"""The Optuna sweeper plugin (hydra_plugins/llm_sweep_optuna) and its pruning reporter.

Sweeps run tests/optuna_app/my_app.py, which returns (x - 2)^2 + y^2, through Hydra's basic
launcher, as `python my_app.py --multirun ...`: each sweep once, one after another in one
process that pays the imports (Optuna's plots among them) once (tests/fixtures/b_cli_batch.py).
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from hydra.test_utils.launcher_common_tests import IntegrationTestSuite, LauncherTestSuite
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from fixtures.b_cli_batch import Ran, code, command, run_commands
from hydra_plugins.llm_sweep_optuna._impl import absolute_storage_url
from hydra_plugins.llm_sweep_optuna._outcome import TrialOutcome, trial_outcome
from hydra_plugins.llm_sweep_optuna._search_space import format_value, parse_search_space
from hydra_plugins.llm_sweep_optuna._trials import StudyTrials, combined_outcome
from hydra_plugins.llm_sweep_optuna.optuna_sweeper import OptunaSweeper
from hydra_plugins.llm_sweep_optuna.pruning import (PRUNER_ATTR, STORAGE_ENV, STUDY_ENV, TRIAL_ENV,
                                                    OptunaPruningReporter, build_pruner)
from llm_sweep.training.stop import PRUNED, StopRequest

APP = Path(__file__).resolve().parent / "optuna_app" / "my_app.py"
STUDY = "my_app"  # the study name defaults to the Hydra job name


def sweep_command(folder: Path, *overrides: str) -> dict:
    """The app's Optuna sweep in `folder`, its study in folder/optuna.db, its jobs in folder/sweep."""
    return command(["--multirun", "hydra/sweeper=optuna", f"hydra.sweeper.storage=sqlite:///{folder}/optuna.db",
                    f"hydra.sweep.dir={folder}/sweep", *overrides], folder, script=APP)


def load_study(tmp_path: Path) -> optuna.Study:
    return optuna.load_study(study_name=STUDY, storage=f"sqlite:///{tmp_path}/optuna.db")


def test_plugin_is_discovered_outside_the_repo_without_importing_optuna(tmp_path: Path) -> None:
    code = ("import sys; from hydra.core.plugins import Plugins; from hydra.plugins.sweeper import Sweeper; "
            "print('OptunaSweeper' in [c.__name__ for c in Plugins.instance().discover(Sweeper)], "
            "'optuna' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == ["True", "False"]


# --- search space -------------------------------------------------------------------------------

@pytest.mark.parametrize("override, expected", [
    ("k=interval(1,5)", FloatDistribution(1.0, 5.0)),
    ("k=tag(log,interval(1e-4,1e-2))", FloatDistribution(1e-4, 1e-2, log=True)),
    ("k=int(interval(1,5))", IntDistribution(1, 5)),
    ("k=tag(log,int(interval(1,64)))", IntDistribution(1, 64, log=True)),
    ("k=range(1,10,3)", IntDistribution(1, 7, step=3)),  # stop excluded, as in Hydra's basic sweeper
    ("k=range(5,0,-1)", IntDistribution(1, 5)),
    ("k=range(0,1,0.25)", CategoricalDistribution((0.0, 0.25, 0.5, 0.75))),
    ("k=choice(a,b,c)", CategoricalDistribution(("a", "b", "c"))),
    ("k=a,b,c", CategoricalDistribution(("a", "b", "c"))),
    ("k=choice(1,2.5,true)", CategoricalDistribution((1, 2.5, True))),
])
def test_each_sweep_form_maps_to_its_distribution(override: str, expected: Any) -> None:
    assert parse_search_space([override]).distributions == {"k": expected}


def test_fixed_overrides_pass_through_in_the_order_given() -> None:
    space = parse_search_space(["lr=interval(0,1)", "+extra=[1,2]", "~drop", "model=gpt2,llama", "seed=3",
                                "seed=choice(1,2)"])  # a later override of a key replaces it
    assert list(space.distributions) == ["lr", "model", "seed"]
    assert space.trial_overrides({"lr": 0.5, "model": "llama", "seed": 2}) == [
        "lr=0.5", "+extra=[1,2]", "~drop", "model=llama", "seed=2"]


def test_sampled_values_parse_back_to_the_same_value() -> None:
    space = parse_search_space([r"k=choice('a,b','it\'s','1',1,true,'x y',[1,2],'${oc.env:HOME}')"])
    param = space.params[0]
    parsed = [OverridesParser.create().parse_override(param.override(c)).value()
              for c in param.distribution.choices]
    expected = ["a,b", "it's", "1", 1, True, "x y", [1, 2], "${oc.env:HOME}"]
    assert parsed == expected
    assert [type(v) for v in parsed] == [type(v) for v in expected]


@pytest.mark.parametrize("value", ["a,b", "it's", "back\\slash'", "ends\\", "true", "1e-3", "null", "x=y",
                                   " padded ", "sqlite:////tmp/optuna.db", 3, 1e-05, -0.5, None, False])
def test_format_value_parses_back_to_the_same_value(value: Any) -> None:
    parsed = OverridesParser.create().parse_override(f"k={format_value(value)}").value()
    assert parsed == value and type(parsed) is type(value)


@pytest.mark.parametrize("override, message", [
    ("k=tag(lgo,interval(1,2))", "unknown tag"),
    ("k=range(3,3)", "empty"),
    # Optuna's own check (log needs low > 0), reported with the override
    ("k=tag(log,interval(0,1))", r"^k=tag\(log,interval\(0,1\)\): .*low"),
])
def test_bad_search_space_is_rejected(override: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_search_space([override])


def test_grid_counts_points_left_and_needs_discrete_params() -> None:
    space = parse_search_space(["x=choice(1,2)", "y=range(0,3)"])
    study = optuna.create_study()
    for params in ({"x": 1, "y": 0}, {"x": 2, "y": 2}, {"x": 1, "y": 0}):
        trial = optuna.trial.create_trial(params=params, distributions=space.distributions, value=0.0)
        study.add_trial(trial)
    assert space.grid() == {"x": [1, 2], "y": [0, 1, 2]}
    assert space.grid_points_left(study.trials) == 4
    with pytest.raises(ValueError, match="discrete"):
        parse_search_space(["lr=interval(0,1)"]).grid()


# --- sweeper settings ---------------------------------------------------------------------------

@pytest.mark.parametrize("url, expected", [
    ("sqlite:///studies/optuna.db", "sqlite:///{cwd}/studies/optuna.db"),
    ("sqlite:////data/optuna.db", "sqlite:////data/optuna.db"),
    ("sqlite:///:memory:", "sqlite:///:memory:"),
    ("postgresql://db.example/optuna", "postgresql://db.example/optuna"),
    (None, None),
])
def test_relative_sqlite_storage_is_made_absolute_for_jobs_in_other_dirs(
        url: str | None, expected: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert absolute_storage_url(url) == (expected and expected.format(cwd=tmp_path))


@pytest.mark.parametrize("settings, message", [
    ({"sampler": "bayes"}, "hydra.sweeper.sampler='bayes' is not one of"),
    ({"direction": "down"}, "hydra.sweeper.direction='down' is not one of"),
    ({"pruner": "median", "storage": None}, "hydra.sweeper.pruner='median' needs a storage"),
    ({"max_failure_rate": 1.5}, "hydra.sweeper.max_failure_rate=1.5 is not allowed: must be >= 0 and <= 1"),
])
def test_bad_sweeper_settings_exit_2_with_one_line(settings: dict, message: str,
                                                    capsys: pytest.CaptureFixture) -> None:
    # SystemExit, unlike an exception, passes through Hydra's instantiate unwrapped.
    with pytest.raises(SystemExit) as exit_info:
        OptunaSweeper(**settings)
    assert exit_info.value.code == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"error: {message}")


# --- job results --------------------------------------------------------------------------------

def _job(tmp_path: Path, status: JobStatus, value: Any, status_file: dict | None = None) -> JobReturn:
    if status_file is not None:
        (tmp_path / "status.json").write_text(json.dumps(status_file))
    hydra_cfg = OmegaConf.create({"hydra": {"runtime": {"output_dir": str(tmp_path)}}})
    ret = JobReturn(status=status, hydra_cfg=hydra_cfg)
    ret.return_value = value
    return ret


@pytest.mark.parametrize("status, value, status_file, expected", [
    (JobStatus.COMPLETED, 1.5, None, TrialOutcome(TrialState.COMPLETE, 1.5)),
    (JobStatus.FAILED, ValueError("boom"), None, TrialOutcome(TrialState.FAIL, error="ValueError: boom")),
    (JobStatus.FAILED, optuna.TrialPruned("step 3"), None, TrialOutcome(TrialState.PRUNED)),
    (JobStatus.COMPLETED, math.nan, {"status": "pruned"}, TrialOutcome(TrialState.PRUNED)),
    (JobStatus.COMPLETED, None, {"status": "failed", "error": "CUDA out of memory"},
     TrialOutcome(TrialState.FAIL, error="CUDA out of memory")),
    (JobStatus.COMPLETED, math.nan, {"status": "killed"},
     TrialOutcome(TrialState.FAIL, error="the job returned nan, not a finite number (status 'killed')")),
    (JobStatus.COMPLETED, "done", None,
     TrialOutcome(TrialState.FAIL, error="the job returned 'done', not a finite number")),
])
def test_job_result_becomes_trial_state(tmp_path: Path, status: JobStatus, value: Any,
                                        status_file: dict | None, expected: TrialOutcome) -> None:
    assert trial_outcome(_job(tmp_path, status, value, status_file)) == expected


# --- pruning reporter ---------------------------------------------------------------------------

def test_reporter_is_none_outside_an_optuna_sweep() -> None:
    assert OptunaPruningReporter.from_env(StopRequest(), {}) is None


def test_reporter_prunes_a_bad_trial_after_warmup(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path}/study.db"
    study = optuna.create_study(study_name="s", storage=storage)
    study.set_user_attr(PRUNER_ATTR, {"name": "median", "min_resource": 2})
    for _ in range(5):  # MedianPruner compares with at least 5 finished trials
        trial = study.ask()
        for step in range(4):
            trial.report(1.0, step)
        study.tell(trial, 1.0)
    good, bad = study.ask(), study.ask()
    env = {STORAGE_ENV: storage, STUDY_ENV: "s"}
    good_stop, bad_stop = StopRequest(), StopRequest()
    good_reporter = OptunaPruningReporter.from_env(good_stop, {**env, TRIAL_ENV: str(good.number)})
    bad_reporter = OptunaPruningReporter.from_env(bad_stop, {**env, TRIAL_ENV: str(bad.number)})

    bad_reporter.log_metrics({"train/loss": 9.0}, 0)  # only val/loss is reported
    for step in range(3):
        good_reporter.log_metrics({"val/loss": 0.5}, step)
    for step in range(2):  # warmup: never pruned
        bad_reporter.log_metrics({"val/loss": 10.0}, step)
    assert not bad_stop.requested
    bad_reporter.log_metrics({"val/loss": 10.0}, 2)  # the loop stops at the next step boundary
    assert bad_stop.reason == PRUNED and "step 2" in bad_stop.detail and not good_stop.requested
    assert study.trials[bad.number].intermediate_values == {0: 10.0, 1: 10.0, 2: 10.0}
    assert study.trials[good.number].intermediate_values == {0: 0.5, 1: 0.5, 2: 0.5}


def test_build_pruner_names() -> None:
    assert isinstance(build_pruner(None), optuna.pruners.NopPruner)
    assert isinstance(build_pruner("hyperband"), optuna.pruners.HyperbandPruner)
    with pytest.raises(ValueError, match="not one of"):
        build_pruner("percentile")


# --- real sweeps --------------------------------------------------------------------------------

# The search space comes from the sweeper's params (y) and the command line (x).
SPACE = ["+hydra.sweeper.params.y='choice(-1,0,1)'", "x=tag(log,interval(0.1,4))", "hydra.sweeper.seed=0"]


def prepare_studies(root: Path) -> None:
    """The studies two sweeps find: one with a trial left RUNNING, as by a sweep that was
    killed; one whose first trials are enqueued, five good ones that set the median, then a
    clearly worse one."""
    crashed = optuna.create_study(study_name=STUDY, storage=f"sqlite:///{root}/failed/optuna.db")
    crashed.ask()
    study = optuna.create_study(study_name=STUDY, storage=f"sqlite:///{root}/median/optuna.db")
    for x in (2, 3, 2, 1, 2, 50):
        study.enqueue_trial({"x": x})


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory) -> dict[str, tuple[Ran, Path]]:
    """The sweeps of the tests below, each run once, in this order: {name: (its result, its
    folder)}. `after_first` is a copy of folder `first` as its first sweep left it, before
    the second one continued its study."""
    root = tmp_path_factory.mktemp("sweeps")
    for name in ("first", "failed", "too_many", "median", "seeded"):
        (root / name).mkdir()
    prepare_studies(root)
    plan = {  # name: (its folder, the command)
        "first": (root / "first", sweep_command(root / "first", "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=2",
                                                *SPACE)),
        "after_first": (root / "after_first", code("import shutil; shutil.copytree('first', 'after_first')", root)),
        "second": (root / "first", sweep_command(root / "first", "hydra.sweeper.n_trials=6", *SPACE)),
        "failed": (root / "failed", sweep_command(root / "failed", "hydra.sweeper.sampler=grid", "x=choice(1,2,3,4)",
                                                  "fail_above=3.5", "hydra.sweeper.n_trials=5", "hydra.sweeper.n_jobs=2")),
        "too_many": (root / "too_many", sweep_command(
            root / "too_many", "x=interval(0,4)", "fail_above=-1", "hydra.sweeper.n_trials=6", "hydra.sweeper.n_jobs=2",
            "hydra.sweeper.max_failure_rate=0.5")),
        # Each trial at three seeds, its value their mean; the best params written as a config.
        "seeded": (root / "seeded", sweep_command(
            root / "seeded", "hydra.sweeper.sampler=grid", "x=choice(1,4)", "noise=0.5", "hydra.sweeper.n_trials=2",
            "hydra.sweeper.n_jobs=2", "hydra.sweeper.seeds=[3,4,5]", "hydra.sweeper.overlay=tuned/best.yaml",
            "hydra.sweeper.overlay_keys=[noise]")),
        # One at a time: trial 5 sees trials 0-4 finished.
        "median": (root / "median", sweep_command(
            root / "median", "x=range(0,60)", "steps=6", "hydra.sweeper.pruner=median",
            "hydra.sweeper.pruner_min_resource=3", "hydra.sweeper.n_trials=6", "hydra.sweeper.n_jobs=1")),
    }
    results = run_commands([job for _, job in plan.values()], root, timeout=600)
    return {name: (result, folder) for (name, (folder, _)), result in zip(plan.items(), results)}


@pytest.mark.slow
def test_the_basic_launcher_runs_trials_in_batches_and_says_so(sweeps) -> None:
    done, _ = sweeps["first"]
    assert done.returncode == 0, done.stderr[-3000:]
    [line] = [line for line in done.stdout.splitlines() if "runs jobs one by one" in line]
    assert "BasicLauncher" in line and "batches of 2" in line


@pytest.mark.slow
def test_sweep_stores_its_trials_and_a_rerun_continues_the_study(sweeps) -> None:
    (first, _), (_, after_first) = sweeps["first"], sweeps["after_first"]
    assert first.returncode == 0, first.stderr
    study = load_study(after_first)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4
    for trial in study.trials:  # each job ran with its trial's sampled values
        x, y = trial.params["x"], trial.params["y"]
        assert 0.1 <= x <= 4 and y in (-1, 0, 1)
        assert trial.value == pytest.approx((x - 2) ** 2 + y ** 2)
        assert trial.user_attrs["overrides"] == [f"y={y}", f"x={x!r}"]
    results = OmegaConf.load(after_first / "sweep" / "optimization_results.yaml")
    assert results.name == STUDY
    assert results.best_params == study.best_params and results.best_value == study.best_value
    assert results.states == {"COMPLETE": 4}
    assert (after_first / "sweep" / "optimization_history.png").stat().st_size > 0
    assert (after_first / "sweep" / "param_importances.png").stat().st_size > 0

    second, folder = sweeps["second"]
    assert second.returncode == 0, second.stderr
    study = load_study(folder)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 6
    new_x = {t.params["x"] for t in study.trials[4:]}
    assert not new_x & {t.params["x"] for t in study.trials[:4]}, "the rerun replayed earlier samples"
    # Job numbers follow trial numbers, so a rerun into the same sweep dir overwrites nothing.
    assert study.trials[5].user_attrs["output_dir"] == str(folder / "sweep" / "5")


@pytest.mark.slow
def test_failed_and_interrupted_trials_are_recorded_and_the_study_goes_on(sweeps) -> None:
    done, folder = sweeps["failed"]  # its study held a trial left RUNNING (prepare_studies)
    assert done.returncode == 0, done.stderr
    assert "Marking 1 trial(s) left RUNNING by an interrupted sweep as FAIL: [0]" in done.stdout
    study = load_study(folder)
    assert study.trials[0].state == TrialState.FAIL
    by_x = {t.params["x"]: t for t in study.trials[1:]}
    assert sorted(by_x) == [1, 2, 3, 4]  # the whole grid, once
    assert by_x[4].state == TrialState.FAIL
    assert by_x[4].user_attrs["error"] == "ValueError: x=4 is above 3.5"
    assert [by_x[x].value for x in (1, 2, 3)] == [1.0, 0.0, 1.0]
    results = OmegaConf.load(folder / "sweep" / "optimization_results.yaml")
    assert (results.best_params, results.best_value) == ({"x": 2}, 0.0)
    assert results.states == {"FAIL": 2, "COMPLETE": 3}


@pytest.mark.slow
def test_a_trial_of_several_seeds_runs_each_and_is_worth_their_mean(sweeps) -> None:
    """hydra.sweeper.seeds=[3,4,5]: each trial is three jobs, numbered in a block per trial,
    one per seed; its value is their mean, and the best trial's params (with the listed keys
    of the sweep) become a config file of the global package."""
    done, folder = sweeps["seeded"]
    assert done.returncode == 0, done.stderr[-3000:]
    study = load_study(folder)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    for trial in study.trials:
        x = trial.params["x"]
        assert trial.value == pytest.approx((x - 2) ** 2 + 0.5 * 4)  # the mean of seeds 3, 4 and 5
        assert trial.user_attrs["seeds"] == [3, 4, 5]
        dirs = [folder / "sweep" / str(3 * trial.number + i) for i in range(3)]
        assert trial.user_attrs["output_dirs"] == [str(d) for d in dirs]
        assert [OmegaConf.load(d / ".hydra" / "config.yaml").seed for d in dirs] == [3, 4, 5]
        assert [OmegaConf.load(d / ".hydra" / "config.yaml").x for d in dirs] == [x] * 3
    overlay = folder / "sweep" / "tuned" / "best.yaml"
    lines = overlay.read_text().splitlines()
    assert lines[0] == "# @package _global_"
    assert f"trial {study.best_trial.number} of 2" in lines[1] and "the mean over seeds [3, 4, 5]" in lines[1]
    assert OmegaConf.to_container(OmegaConf.load(overlay)) == {"noise": 0.5, "x": study.best_params["x"]}
    assert study.best_params["x"] == 1


@pytest.mark.parametrize("settings, message", [
    ({"seeds": [1, 2], "pruner": "median"}, "hydra.sweeper.seeds=[1, 2] runs each trial at 2 seeds"),
    ({"seeds": [1, 1]}, "hydra.sweeper.seeds=[1, 1] repeats a seed"),
    ({"seeds": [1, -1]}, "hydra.sweeper.seeds[1]=-1 is not allowed: must be >= 0"),
])
def test_seeds_refuse_a_pruner_and_repeats(settings: dict, message: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        OptunaSweeper(**settings)
    assert exit_info.value.code == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"error: {message}")


def test_the_runs_of_a_seeded_trial_carry_their_seed_and_no_pruning_identity() -> None:
    """One run per trial: the trial's identity for the pruner (through hydra.job.env_set).
    Several seeds: each run its `seed=`, and no identity, since no pruner judges them."""
    study = optuna.create_study()
    space = parse_search_space(["x=interval(0,4)"])
    one = StudyTrials(study, space, "sqlite:///s.db", 0.5).job_overrides(study.ask(space.distributions))
    assert len(one) == 1 and any(TRIAL_ENV in o for o in one[0])
    seeded = StudyTrials(study, space, "sqlite:///s.db", 0.5, seeds=[7, 8])
    jobs = seeded.job_overrides(study.ask(space.distributions))
    assert [job[-1] for job in jobs] == ["seed=7", "seed=8"]
    assert not any("env_set" in o for job in jobs for o in job)
    assert [seeded.job_number(study.trials[1], i) for i in (0, 1)] == [2, 3]


@pytest.mark.parametrize("outcomes, expected", [
    ([TrialOutcome(TrialState.COMPLETE, 1.0), TrialOutcome(TrialState.COMPLETE, 2.0)],
     TrialOutcome(TrialState.COMPLETE, 1.5)),
    ([TrialOutcome(TrialState.COMPLETE, 1.0), TrialOutcome(TrialState.FAIL, error="boom"),
      TrialOutcome(TrialState.PRUNED)], TrialOutcome(TrialState.FAIL, error="boom")),
    ([TrialOutcome(TrialState.PRUNED), TrialOutcome(TrialState.COMPLETE, 2.0)], TrialOutcome(TrialState.PRUNED)),
])
def test_a_trial_of_several_runs_fails_if_one_does_else_averages(outcomes, expected) -> None:
    assert combined_outcome(outcomes) == expected


@pytest.mark.slow
def test_sweep_stops_when_too_many_trials_fail(sweeps) -> None:
    done, folder = sweeps["too_many"]
    assert done.returncode == 1
    assert "2 of 2 trials failed in this sweep, above max_failure_rate=0.5" in done.stderr
    assert [t.state for t in load_study(folder).trials] == [TrialState.FAIL] * 2  # the first batch only


@pytest.mark.slow
def test_median_pruner_prunes_a_clearly_worse_trial(sweeps) -> None:
    done, folder = sweeps["median"]  # its first six trials were enqueued (prepare_studies)
    assert done.returncode == 0, done.stderr
    study = load_study(folder)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 5 + [TrialState.PRUNED]
    assert all(len(t.intermediate_values) == 6 for t in study.trials[:5])
    assert list(study.trials[5].intermediate_values) == [0, 1, 2, 3]  # pruned at the end of warmup
    status = json.loads((folder / "sweep" / "5" / "status.json").read_text())
    assert status == {"status": "pruned"}


# --- Hydra's own sweeper and launcher test suites -----------------------------------------------

# BatchedSweeperTestSuite does not apply: it asserts the basic sweeper's cartesian job order.
SUITE_FLAGS = ["hydra/sweeper=optuna", "hydra.sweeper.storage=null", "hydra.sweeper.n_trials=1"]
# The integration suite's tasks return nothing, which the sweeper records as a failed trial.
INTEGRATION_FLAGS = ["--multirun", *SUITE_FLAGS, "hydra.sweeper.max_failure_rate=1.0"]
ORDER = "asserts the basic sweeper's job order; Optuna's grid sampler visits points in a seeded shuffle"


class TestHydraLauncherSuite(LauncherTestSuite):
    """Hydra's launcher suite, run through the Optuna sweeper (in process)."""

    @pytest.fixture
    def launcher_name(self) -> str:
        return "basic"

    @pytest.fixture
    def overrides(self) -> list[str]:
        # The suite expects jobs to run in their output dirs, which other tests' Hydra
        # version base (a process-wide setting) may have turned off.
        return [*SUITE_FLAGS, "hydra.job.chdir=True"]

    @pytest.mark.skip(reason=ORDER)
    def test_sweep_2_jobs(self) -> None: ...

    @pytest.mark.skip(reason=ORDER)
    def test_sweep_2_optimizers(self) -> None: ...

    @pytest.mark.skip(reason=ORDER)
    def test_sweep_over_unspecified_mandatory_default(self) -> None: ...

    @pytest.mark.skip(reason=ORDER)
    def test_sweep_and_override(self) -> None: ...

    @pytest.mark.skip(reason="its task returns a string; an Optuna objective must be a number")
    def test_sweep_with_custom_resolver(self) -> None: ...


@pytest.mark.slow
class TestHydraIntegrationSuite(IntegrationTestSuite):
    """Hydra's multirun integration suite (job names, sweep dirs, original cwd) as real processes."""

    @pytest.fixture
    def task_launcher_cfg(self) -> dict:
        return {}

    @pytest.fixture
    def extra_flags(self) -> list[str]:
        return list(INTEGRATION_FLAGS)
