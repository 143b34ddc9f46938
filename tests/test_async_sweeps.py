"""Sweeps that keep every slot busy: asynchronous Optuna trials and pruners compared at
equal tokens; and what a dry run and a GPU-hour limit are made of (a job's cost, the Slurm
arrays it would submit).

Asynchronous sweeps run tests/optuna_app/my_app.py (it sleeps `sleep` seconds) through
the submitit local launcher, its trials as real processes. Each sweep runs once, and most
one after another in one process that pays the imports once (tests/fixtures/b_cli_batch.py);
the sweep stopped with Ctrl-C, and the one whose trial Slurm requeues, are processes of their
own. The dry runs and the GPU-hour limit of the real app are run in tests/test_sweeps.py,
and tests/test_optuna_sweeper.py checks that the basic launcher runs trials in batches.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import optuna
import pytest
from omegaconf import OmegaConf
from optuna.trial import TrialState

from fixtures.b_cli_batch import Ran, command, run_commands
from hydra_plugins.llm_sweep_optuna._async import ctrl_c_raised_between_steps
from hydra_plugins.llm_sweep_optuna._trials import FailureCount
from hydra_plugins.llm_sweep_optuna.config import OptunaSweeperConf
from hydra_plugins.llm_sweep_optuna.pruning import (PRUNER_ATTR, STORAGE_ENV, STUDY_ENV, TRIAL_ENV,
                                                    OptunaPruningReporter, build_pruner)
from llm_sweep.core.config import BatchConfig, BudgetConfig, RunConfig
from llm_sweep.core.errors import ConfigError
from llm_sweep.core.model_config import ModelConfig
from llm_sweep.core.rules import check
from llm_sweep.core.size import flops_per_token
from llm_sweep.plan.presets import DEFAULT_MFU, DEFAULT_PEAK_FLOPS
from llm_sweep.sweeping.costs import expected_throughput, job_cost
from llm_sweep.sweeping.preview import SweepPreview
from llm_sweep.sweeping.preview_text import describe_launcher
from llm_sweep.training.metrics import tokens_per_s_at_mfu
from llm_sweep.training.sinks import RunInfo
from llm_sweep.training.stop import StopRequest
from slurm_cluster import slurm_cluster  # noqa: F401

APP = Path(__file__).resolve().parent / "optuna_app" / "my_app.py"
STUDY = "my_app"
LOCAL = ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5"]


def storage_of(folder: Path) -> str:
    return f"sqlite:///{folder}/optuna.db"


def sweep_args(folder: Path, *overrides: str) -> list[str]:
    """The arguments of the app's Optuna sweep through submitit's local launcher, its study
    in folder/optuna.db, its jobs in folder/sweep."""
    return ["--multirun", "hydra/sweeper=optuna", *LOCAL, f"hydra.sweeper.storage={storage_of(folder)}",
            f"hydra.sweep.dir={folder}/sweep", *overrides]


def new_study(folder: Path, *params: dict) -> optuna.Study:
    """A study holding `params` as enqueued trials, asked for in this order."""
    folder.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(study_name=STUDY, storage=storage_of(folder))
    for point in params:
        study.enqueue_trial(point)
    return study


def trials_of(folder: Path) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=STUDY, storage=storage_of(folder)).trials


def fewest_running(trials: list[optuna.trial.FrozenTrial], n_jobs: int, refill: timedelta) -> int:
    """The fewest trials running at any moment from the `n_jobs`-th start (the slots are
    filled one after another) to the last start (no trial remains to start). A trial counts
    as running until `refill` after it completes: the sweeper's tell and ask in between take
    milliseconds."""
    spans = sorted((t.datetime_start, t.datetime_complete + refill) for t in trials)
    first, last = spans[n_jobs - 1][0], spans[-1][0]
    moments = sorted({m for span in spans for m in span if first <= m <= last})
    return min(sum(start <= m < end for start, end in spans) for m in moments)


def span_s(trials: list[optuna.trial.FrozenTrial]) -> float:
    return (max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)).total_seconds()


# --- settings, pruners and costs ----------------------------------------------------------------

@pytest.mark.parametrize("settings, message", [
    ({"pruner": "hyperband"}, "hydra.sweeper.pruner=hyperband needs hydra.sweeper.pruner_min_resource"),
    ({"timeout": "soon"}, "hydra.sweeper.timeout='soon' is not allowed: must be a duration > 0"),
    ({"pruner_min_resource": 0}, "hydra.sweeper.pruner_min_resource=0 is not allowed: must be >= 1"),
])
def test_bad_async_and_pruner_settings_name_the_key(settings: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        check(OptunaSweeperConf(**settings), "hydra.sweeper.")
    assert str(info.value).startswith(message)


def test_asynchronous_trials_are_the_default() -> None:
    conf = OptunaSweeperConf(timeout="2h", pruner="sha")
    check(conf, "hydra.sweeper.")
    assert conf.asynchronous is True


def test_pruners_take_their_min_resource_in_tokens() -> None:
    sha = build_pruner("sha", 4096)
    assert isinstance(sha, optuna.pruners.SuccessiveHalvingPruner) and sha._min_resource == 4096
    assert build_pruner("sha")._min_resource is None  # "auto": estimated by Optuna
    assert isinstance(build_pruner("hyperband", 4096), optuna.pruners.HyperbandPruner)
    assert build_pruner("median", 4096)._n_warmup_steps == 4096


def test_trials_with_different_batches_report_at_equal_tokens(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path}/study.db"
    study = optuna.create_study(study_name="s", storage=storage)
    study.set_user_attr(PRUNER_ATTR, {"name": "sha", "min_resource": 1024})
    env = {STORAGE_ENV: storage, STUDY_ENV: "s"}
    reported = {}
    for tokens_per_step, eval_steps in ((256, (4, 8)), (512, (2, 4))):
        trial = study.ask()
        reporter = OptunaPruningReporter.from_env(StopRequest(), {**env, TRIAL_ENV: str(trial.number)})
        reporter.start(RunInfo("cpu", "fp32", False, 1, 1, 1, tokens_per_step, None))
        for step in eval_steps:
            reporter.log_metrics({"val/loss": 5.0 - step / 10}, step)
        reported[tokens_per_step] = sorted(study.trials[trial.number].intermediate_values)
    assert reported == {256: [1024, 2048], 512: [1024, 2048]}


def test_failure_rate_waits_for_a_first_round_of_trials() -> None:
    count = FailureCount(max_rate=0.5)
    count.add("boom")
    assert count.exceeded() and not count.exceeded(min_finished=2)
    count.add(None)
    assert not count.exceeded(min_finished=2)
    count.add("boom")
    assert count.exceeded(min_finished=2)


def run(budget: BudgetConfig, micro_batch_size: int = 8) -> RunConfig:
    return RunConfig(model=ModelConfig(n_layer=2, n_embd=128), budget=budget,
                     batch=BatchConfig(micro_batch_size=micro_batch_size, grad_accum=1, seq_len=128))


def test_a_job_costs_what_its_binding_budget_allows() -> None:
    rate = expected_throughput(None, None)
    per_token = flops_per_token(run(BudgetConfig(steps=1)).model, 128)
    tokens_per_s = tokens_per_s_at_mfu(DEFAULT_MFU, per_token, DEFAULT_PEAK_FLOPS)
    steps = job_cost(run(BudgetConfig(steps=100)), rate)
    assert (steps.binding, steps.tokens, steps.flops) == ("steps", 100 * 1024, 100 * 1024 * per_token)
    assert steps.seconds == pytest.approx(steps.tokens / tokens_per_s)
    assert job_cost(run(BudgetConfig(tokens=1500)), rate).tokens == 2048  # whole steps
    assert job_cost(run(BudgetConfig(flops=per_token * 3000)), rate).tokens == 3072
    timed = job_cost(run(BudgetConfig(time="1h", steps=10**9)), rate, devices=2)
    assert timed.binding == "time" and timed.seconds == pytest.approx(3600)
    assert timed.tokens == pytest.approx(2 * tokens_per_s * 3600)
    assert timed.gpu_hours == pytest.approx(2 * (3600 + timed.overhead_s) / 3600)  # evaluations and start-up too
    assert timed.tokens_per_param == pytest.approx(timed.tokens / timed.params)


def test_a_bench_sets_the_expected_throughput(tmp_path: Path) -> None:
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"flops_per_token": 1e6, "records": [
        {"mode": "eager-fp32", "tokens_per_s": 1000.0, "mfu": 0.1},
        {"mode": "compile-bf16", "tokens_per_s": 3000.0, "mfu": 0.2}]}))
    rate = expected_throughput(str(bench), None)
    assert (rate.mfu, rate.peak_flops) == (0.2, pytest.approx(3000 * 1e6 / 0.2))
    assert "compile-bf16" in rate.source


def test_the_dry_run_names_the_slurm_arrays_it_would_submit() -> None:
    launcher = OmegaConf.create({"_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher", "partition": "gpu", "timeout_min": 240,
                                 "gpus_per_node": 1, "nodes": 1, "cpus_per_task": 8, "mem_gb": 64,
                                 "array_parallelism": 8})
    text = describe_launcher(SweepPreview([], [10, 10, 5], expected_throughput(None, None)), launcher)
    assert "3 job arrays one after another (sbatch --array=0-9%8, sbatch --array=0-9%8, " \
           "sbatch --array=0-4%5), at most 8 tasks running at once" in text
    assert "partition gpu, time limit 240 min, 1 GPU(s) x 1 node(s), 8 CPU(s) and 64 GB per job" in text


# --- asynchronous trials ------------------------------------------------------------------------

LONG_S = 5.0  # long enough that batches lose by more than the trials' start-up varies on a loaded machine
UNEVEN = [{"sleep": LONG_S}, {"sleep": 0}, {"sleep": 0}, {"sleep": LONG_S}, {"sleep": 0}, {"sleep": 0}]
SPACE = [f"sleep=choice(0,{LONG_S})", "hydra.sweeper.n_jobs=2"]


def test_ctrl_c_is_a_flag_the_loop_raises_and_a_second_one_raises_at_once():
    """Ctrl-C during the async loop is never dropped where it lands (a finalizer drops an
    exception): the loop's next check raises it; a second Ctrl-C raises immediately."""
    before = signal.getsignal(signal.SIGINT)
    with ctrl_c_raised_between_steps() as check_interrupt:
        check_interrupt()  # nothing pending
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)  # the handler runs: it only sets the flag
        with pytest.raises(KeyboardInterrupt):
            check_interrupt()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)
    assert signal.getsignal(signal.SIGINT) is before


def both_trials_running(folder: Path) -> bool:
    """Trials 0 and 1 are RUNNING in the study and their jobs have started (Hydra made their
    run directories): the state the interrupt is meant to find."""
    if len(list((folder / "sweep").glob("[01]/.hydra"))) < 2 or not (folder / "optuna.db").exists():
        return False
    try:
        states = [t.state for t in trials_of(folder)]
    except Exception:  # the study is still being created
        return False
    return states == [TrialState.RUNNING] * 2


def stop_with_ctrl_c_once_both_trials_run(folder: Path) -> tuple[subprocess.Popen, str]:
    """A sweep of 60 s trials, two at a time, sent SIGINT once both trials run: it and its output."""
    cmd = [sys.executable, str(APP), "--multirun", "hydra/sweeper=optuna", *LOCAL, "sleep=60",
           f"hydra.sweeper.storage={storage_of(folder)}", f"hydra.sweep.dir={folder}/sweep",
           "x=interval(0,4)", "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=2"]
    # Output to a file: submitit's local job controllers inherit the sweeper's stdout, and a
    # pipe would stay open until the last of them has exited.
    log = folder / "sweeper.log"
    with log.open("w") as out:
        sweeper = subprocess.Popen(cmd, cwd=folder, stdout=out, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 240  # a wait on a state, not a speed limit
        while not both_trials_running(folder):
            assert sweeper.poll() is None, f"the sweeper ended early: {log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"the jobs never started: {log.read_text()[-3000:]}"
            time.sleep(0.2)
        sweeper.send_signal(signal.SIGINT)
        sweeper.wait(timeout=240)  # it cancels both jobs first: bounded, not timed
    finally:
        if sweeper.poll() is None:
            sweeper.kill()
    return sweeper, log.read_text()


@dataclass(frozen=True)
class Stopped:
    folder: Path
    process: subprocess.Popen  # the sweep Ctrl-C stopped
    output: str  # its output
    trials: list  # the study as it left it


@pytest.fixture(scope="module")
def stopped_sweep(tmp_path_factory) -> Stopped:
    """A sweep stopped with Ctrl-C while its two trials run, once for the tests below."""
    folder = tmp_path_factory.mktemp("ctrl_c")
    process, output = stop_with_ctrl_c_once_both_trials_run(folder)
    return Stopped(folder, process, output, trials_of(folder))


def prepare_pruned_study(folder: Path) -> None:
    """Five finished trials, which the median pruner compares with, then three enqueued: a
    slow good trial, a bad one, then the next."""
    study = new_study(folder)
    study.set_user_attr(PRUNER_ATTR, {"name": "median", "min_resource": 2})
    distributions = {"x": optuna.distributions.IntDistribution(0, 60),
                     "sleep": optuna.distributions.CategoricalDistribution((0, 6))}
    for _ in range(5):
        study.add_trial(optuna.trial.create_trial(params={"x": 2, "sleep": 0}, distributions=distributions,
                                                  value=1.0, intermediate_values={s: 1.0 for s in range(4)}))
    for point in ({"x": 2, "sleep": 6}, {"x": 50, "sleep": 0}, {"x": 2, "sleep": 0}):
        study.enqueue_trial(point)


@pytest.fixture(scope="module")
def sweeps(stopped_sweep: Stopped, tmp_path_factory) -> dict[str, tuple[Ran, Path]]:
    """The asynchronous sweeps of the tests below, each run once, one after another in one
    process that pays the imports once (tests/fixtures/b_cli_batch.py), in this order:
    - `pruned`: a sweep with the median pruner; it also loads everything the next two load,
      so neither of those, whose wall times are compared, pays for it;
    - `asynchronous` and `batched`: the six UNEVEN trials, two at a time, asynchronous, then
      in batches;
    - `continued`: the asynchronous sweep's study continued to 8 trials, in its folder;
    - `seeded`: two trials of two seeds each, both trials in flight at once;
    - `rerun`: the study of the sweep Ctrl-C stopped, run again with a 1 s timeout and trials
      of 3 s (8 trials wanted, 2 done: 6 to run).
    {name: (its result, its folder)}."""
    folders = {name: tmp_path_factory.mktemp(name) for name in ("pruned", "asynchronous", "batched", "seeded")}
    prepare_pruned_study(folders["pruned"])
    new_study(folders["asynchronous"], *UNEVEN)
    new_study(folders["batched"], *UNEVEN)
    uneven = [*SPACE, "hydra.sweeper.n_trials=6"]
    plan = {
        "pruned": (folders["pruned"], ["x=range(0,61)", "sleep=choice(0,6)", "steps=4", "hydra.sweeper.pruner=median",
                                       "hydra.sweeper.pruner_min_resource=2", "hydra.sweeper.n_trials=8",
                                       "hydra.sweeper.n_jobs=2"]),
        "asynchronous": (folders["asynchronous"], [*uneven, "hydra.sweeper.asynchronous=true"]),
        "batched": (folders["batched"], [*uneven, "hydra.sweeper.asynchronous=false"]),
        "continued": (folders["asynchronous"], [*SPACE, "hydra.sweeper.n_trials=8"]),
        "seeded": (folders["seeded"], ["hydra.sweeper.sampler=grid", "x=choice(1,3)", "noise=0.5", "hydra.sweeper.seeds=[0,1]",
                                       "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2"]),
        "rerun": (stopped_sweep.folder, ["x=interval(0,4)", "sleep=3", "hydra.sweeper.timeout=1s",
                                         "hydra.sweeper.n_trials=8", "hydra.sweeper.n_jobs=2"]),
    }
    results = run_commands([command(sweep_args(folder, *overrides), folder, script=APP)
                            for folder, overrides in plan.values()], tmp_path_factory.mktemp("sweeps"))
    return {name: (result, folder) for (name, (folder, _)), result in zip(plan.items(), results)}


@pytest.mark.slow
def test_async_trials_keep_every_slot_busy_and_beat_batches(sweeps) -> None:
    runs = {mode: sweeps[mode] for mode in ("asynchronous", "batched")}
    trials = {}
    for mode, (done, folder) in runs.items():
        assert done.returncode == 0, done.stderr[-3000:]
        trials[mode] = trials_of(folder)[:6]  # the asynchronous study goes on to 8 trials later
        assert [t.state for t in trials[mode]] == [TrialState.COMPLETE] * 6
    assert fewest_running(trials["asynchronous"], n_jobs=2, refill=timedelta(seconds=1)) == 2
    spans = {mode: span_s(trials[mode]) for mode in runs}
    walls = {mode: done.wall_s for mode, (done, _) in runs.items()}
    print(f"wall s: async {walls['asynchronous']:.1f}, batched {walls['batched']:.1f}; trial span s: "
          f"async {spans['asynchronous']:.1f}, batched {spans['batched']:.1f}")
    # Batches wait for their long trial twice; slots refilled at once run both long ones side by side.
    assert spans["asynchronous"] < spans["batched"] - LONG_S / 2
    assert walls["asynchronous"] < walls["batched"]


@pytest.mark.slow
def test_an_async_trial_of_two_seeds_ends_when_both_have(sweeps) -> None:
    done, folder = sweeps["seeded"]
    assert done.returncode == 0, done.stderr[-3000:]
    trials = trials_of(folder)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    for trial in trials:  # the mean of seeds 0 and 1: noise 0.5 x 0.5
        assert trial.value == pytest.approx((trial.params["x"] - 2) ** 2 + 0.25)
        dirs = [folder / "sweep" / str(2 * trial.number + i) for i in range(2)]
        assert trial.user_attrs["output_dirs"] == [str(d) for d in dirs]
        assert [OmegaConf.load(d / ".hydra" / "config.yaml").seed for d in dirs] == [0, 1]


@pytest.mark.slow
def test_a_pruned_trial_frees_its_slot_at_once(sweeps) -> None:
    done, folder = sweeps["pruned"]
    assert done.returncode == 0, done.stderr[-3000:]
    slow, bad, refill = trials_of(folder)[5:]
    assert (slow.state, bad.state, refill.state) == (TrialState.COMPLETE, TrialState.PRUNED,
                                                     TrialState.COMPLETE)
    assert refill.datetime_start < slow.datetime_complete  # the pruned trial's slot did not wait


@pytest.mark.slow
def test_continuing_an_async_study_adds_exactly_the_difference(sweeps) -> None:
    """The asynchronous sweep's study (6 trials) continued to 8 trials, into the same folder."""
    (first, _), (second, folder) = sweeps["asynchronous"], sweeps["continued"]
    assert "2 at a time" in first.stdout
    assert second.returncode == 0, second.stderr[-3000:]
    assert "6 of 8 trials done, 2 to run" in second.stdout
    trials = trials_of(folder)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 8
    # Job numbers are trial numbers: the second sweep's jobs did not overwrite the first's.
    assert [t.user_attrs["output_dir"] for t in trials] == [str(folder / "sweep" / str(n)) for n in range(8)]
    assert sorted(p.name for p in (folder / "sweep").iterdir() if p.name.isdigit()) == list("01234567")


@pytest.mark.slow
def test_ctrl_c_records_every_started_trial_and_a_rerun_continues(stopped_sweep: Stopped, sweeps) -> None:
    stopped = stopped_sweep
    assert stopped.process.returncode != 0
    assert [t.state for t in stopped.trials] == [TrialState.FAIL] * 2, stopped.output[-3000:]
    assert all(t.user_attrs["error"].startswith("interrupted") for t in stopped.trials)
    rerun, folder = sweeps["rerun"]
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "2 of 8 trials done, 6 to run" in rerun.stdout  # the failed trials count as done
    assert [t.state for t in trials_of(folder)] == [TrialState.FAIL] * 2 + [TrialState.COMPLETE] * 2


@pytest.mark.slow
def test_no_trial_starts_after_the_timeout(sweeps) -> None:
    """The rerun's 1 s timeout: 2 of its 6 trials start, and those running finish."""
    rerun, folder = sweeps["rerun"]
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert [t.state for t in trials_of(folder)[2:]] == [TrialState.COMPLETE] * 2
    assert "Timeout: 2 of 6 trials started" in rerun.stdout


def reported_steps(folder: Path, steps: int) -> bool:
    """Trial 0's job has started (Hydra made its run directory; the sweeper created the study
    before it) and reported `steps` intermediate values."""
    if not (folder / "sweep" / "0" / ".hydra").exists():
        return False
    [trial] = trials_of(folder)
    return len(trial.intermediate_values) >= steps


@pytest.mark.slurm
def test_a_requeued_trial_resumes_as_the_same_trial(tmp_path: Path, slurm_cluster: None) -> None:
    slurm = ["hydra/launcher=submitit_slurm", "hydra.launcher.timeout_min=5", "hydra.launcher.max_num_timeout=3"]
    # The job reports its 3 steps, then sleeps: the signal finds it asleep, and it sleeps again once requeued.
    cmd = [sys.executable, str(APP), "--multirun", "hydra/sweeper=optuna", *slurm, "sleep=10", "steps=3",
           f"hydra.sweeper.storage={storage_of(tmp_path)}", f"hydra.sweep.dir={tmp_path}/sweep",
           "x=interval(0,4)", "hydra.sweeper.n_trials=1", "hydra.sweeper.n_jobs=1"]
    sweeper = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 240  # a wait, not a speed limit
        while not reported_steps(tmp_path, 3):  # the trial's job is running, in its sleep
            assert time.monotonic() < deadline and sweeper.poll() is None, "the job never started"
            time.sleep(0.5)
        [job_id] = [p.name for p in (tmp_path / "sweep" / ".submitit").iterdir() if p.name.isdigit()]
        subprocess.run(["scancel", "--signal=USR2", job_id], check=True)
        output, _ = sweeper.communicate(timeout=180)
    finally:
        if sweeper.poll() is None:
            sweeper.kill()
    assert sweeper.returncode == 0, output[-3000:]
    assert "Requeued job" in (tmp_path / "sweep" / "0" / "my_app.log").read_text()
    [trial] = trials_of(tmp_path)  # the requeued job reported to its trial, and completed it
    assert trial.state == TrialState.COMPLETE and sorted(trial.intermediate_values) == [0, 1, 2]
    assert trial.user_attrs["output_dir"] == str(tmp_path / "sweep" / "0")
