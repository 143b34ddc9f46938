"""Sweeps that keep every slot busy: asynchronous Optuna trials, pruners compared at equal
tokens, and a sweep's dry run with its GPU-hour limit.

Asynchronous sweeps run tests/optuna_app/my_app.py (it sleeps `sleep` seconds) through
the submitit local launcher as real processes; the dry run runs the real app.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import optuna
import pytest
import yaml
from omegaconf import OmegaConf
from optuna.trial import TrialState

from conftest import TINY, run_app
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


def sweep(folder: Path, *overrides: str,
          launcher: list[str] = LOCAL) -> tuple[subprocess.CompletedProcess, float]:
    """The app's Optuna sweep as a real process in `folder`; returns it and its wall time."""
    cmd = [sys.executable, str(APP), "--multirun", "hydra/sweeper=optuna", *launcher,
           f"hydra.sweeper.storage={storage_of(folder)}", f"hydra.sweep.dir={folder}/sweep", *overrides]
    start = time.monotonic()
    done = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, timeout=420)  # a bound, not a speed limit
    return done, time.monotonic() - start


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

LONG_S = 3.0
UNEVEN = [{"sleep": LONG_S}, {"sleep": 0}, {"sleep": 0}, {"sleep": LONG_S}, {"sleep": 0}, {"sleep": 0}]
SPACE = [f"sleep=choice(0,{LONG_S})", "hydra.sweeper.n_trials=6", "hydra.sweeper.n_jobs=2"]


@pytest.mark.slow
def test_async_trials_keep_every_slot_busy_and_beat_batches(tmp_path: Path) -> None:
    timings = {}
    for mode in ("true", "false"):
        folder = tmp_path / f"asynchronous_{mode}"
        new_study(folder, *UNEVEN)
        done, timings[mode] = sweep(folder, *SPACE, f"hydra.sweeper.asynchronous={mode}")
        assert done.returncode == 0, done.stderr[-3000:]
        trials = trials_of(folder)
        assert [t.state for t in trials] == [TrialState.COMPLETE] * 6
        timings[mode, "span"] = span_s(trials)
        if mode == "true":
            assert fewest_running(trials, n_jobs=2, refill=timedelta(seconds=1)) == 2
    print(f"wall s: async {timings['true']:.1f}, batched {timings['false']:.1f}; trial span s: "
          f"async {timings['true', 'span']:.1f}, batched {timings['false', 'span']:.1f}")
    # Batches wait for their long trial twice; slots refilled at once run both long ones side by side.
    assert timings["true", "span"] < timings["false", "span"] - LONG_S / 2
    assert timings["true"] < timings["false"]


@pytest.mark.slow
def test_a_pruned_trial_frees_its_slot_at_once(tmp_path: Path) -> None:
    study = new_study(tmp_path)
    study.set_user_attr(PRUNER_ATTR, {"name": "median", "min_resource": 2})
    distributions = {"x": optuna.distributions.IntDistribution(0, 60),
                     "sleep": optuna.distributions.CategoricalDistribution((0, 6))}
    for _ in range(5):  # the median pruner compares with at least 5 finished trials
        study.add_trial(optuna.trial.create_trial(params={"x": 2, "sleep": 0}, distributions=distributions,
                                                  value=1.0, intermediate_values={s: 1.0 for s in range(4)}))
    for point in ({"x": 2, "sleep": 6}, {"x": 50, "sleep": 0}, {"x": 2, "sleep": 0}):
        study.enqueue_trial(point)  # a slow good trial, a bad one, then the next
    done, _ = sweep(tmp_path, "x=range(0,61)", "sleep=choice(0,6)", "steps=4", "hydra.sweeper.pruner=median",
                    "hydra.sweeper.pruner_min_resource=2", "hydra.sweeper.n_trials=8", "hydra.sweeper.n_jobs=2")
    assert done.returncode == 0, done.stderr[-3000:]
    slow, bad, refill = trials_of(tmp_path)[5:]
    assert (slow.state, bad.state, refill.state) == (TrialState.COMPLETE, TrialState.PRUNED,
                                                     TrialState.COMPLETE)
    assert refill.datetime_start < slow.datetime_complete  # the pruned trial's slot did not wait


@pytest.mark.slow
def test_continuing_an_async_study_adds_exactly_the_difference(tmp_path: Path) -> None:
    first, _ = sweep(tmp_path, "x=interval(0,4)", "hydra.sweeper.n_trials=3", "hydra.sweeper.n_jobs=2")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "2 at a time" in first.stdout
    second, _ = sweep(tmp_path, "x=interval(0,4)", "hydra.sweeper.n_trials=5", "hydra.sweeper.n_jobs=2")
    assert second.returncode == 0, second.stderr[-3000:]
    trials = trials_of(tmp_path)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 5
    # Job numbers are trial numbers: the second sweep's jobs did not overwrite the first's.
    assert [t.user_attrs["output_dir"] for t in trials] == [str(tmp_path / "sweep" / str(n)) for n in range(5)]
    assert sorted(p.name for p in (tmp_path / "sweep").iterdir() if p.name.isdigit()) == list("01234")


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


@pytest.mark.slow
def test_ctrl_c_records_every_started_trial_and_a_rerun_continues(tmp_path: Path) -> None:
    cmd = [sys.executable, str(APP), "--multirun", "hydra/sweeper=optuna", *LOCAL, "sleep=60",
           f"hydra.sweeper.storage={storage_of(tmp_path)}", f"hydra.sweep.dir={tmp_path}/sweep",
           "x=interval(0,4)", "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=2"]
    # Output to a file: submitit's local job controllers inherit the sweeper's stdout, and a
    # pipe would stay open until the last of them has exited.
    log = tmp_path / "sweeper.log"
    with log.open("w") as out:
        sweeper = subprocess.Popen(cmd, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 240  # a wait on a state, not a speed limit
        while not both_trials_running(tmp_path):
            assert sweeper.poll() is None, f"the sweeper ended early: {log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"the jobs never started: {log.read_text()[-3000:]}"
            time.sleep(0.2)
        sweeper.send_signal(signal.SIGINT)
        sweeper.wait(timeout=240)  # it cancels both jobs first: bounded, not timed
    finally:
        if sweeper.poll() is None:
            sweeper.kill()
    output = log.read_text()
    assert sweeper.returncode != 0
    trials = trials_of(tmp_path)
    assert [t.state for t in trials] == [TrialState.FAIL] * 2, output[-3000:]
    assert all(t.user_attrs["error"].startswith("interrupted") for t in trials)
    again, _ = sweep(tmp_path, "x=interval(0,4)", "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=2")
    assert again.returncode == 0, again.stderr[-3000:]
    assert [t.state for t in trials_of(tmp_path)] == [TrialState.FAIL] * 2 + [TrialState.COMPLETE] * 2


@pytest.mark.slow
def test_no_trial_starts_after_the_timeout(tmp_path: Path) -> None:
    done, _ = sweep(tmp_path, "x=interval(0,4)", "sleep=3", "hydra.sweeper.timeout=1s",
                    "hydra.sweeper.n_trials=6", "hydra.sweeper.n_jobs=2")
    assert done.returncode == 0, done.stderr[-3000:]
    assert [t.state for t in trials_of(tmp_path)] == [TrialState.COMPLETE] * 2  # the running ones finish
    assert "Timeout: 2 of 6 trials started" in done.stdout


@pytest.mark.slurm
def test_a_requeued_trial_resumes_as_the_same_trial(tmp_path: Path, slurm_cluster: None) -> None:
    slurm = ["hydra/launcher=submitit_slurm", "hydra.launcher.timeout_min=5", "hydra.launcher.max_num_timeout=3"]
    cmd = [sys.executable, str(APP), "--multirun", "hydra/sweeper=optuna", *slurm, "sleep=20", "steps=3",
           f"hydra.sweeper.storage={storage_of(tmp_path)}", f"hydra.sweep.dir={tmp_path}/sweep",
           "x=interval(0,4)", "hydra.sweeper.n_trials=1", "hydra.sweeper.n_jobs=1"]
    sweeper = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 240  # a wait, not a speed limit
        while not (tmp_path / "sweep" / "0" / ".hydra").exists():  # the trial's job is running
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


@pytest.mark.slow
def test_the_basic_launcher_runs_trials_in_batches_and_says_so(tmp_path: Path) -> None:
    done, _ = sweep(tmp_path, "x=interval(0,4)", "hydra.sweeper.n_trials=2", launcher=[])
    assert done.returncode == 0, done.stderr[-3000:]
    [line] = [line for line in done.stdout.splitlines() if "runs jobs one by one" in line]
    assert "BasicLauncher" in line and "batches of 2" in line


# --- dry run and GPU-hour limit -----------------------------------------------------------------

def job_lines(output: str) -> list[str]:
    """The dry run's job list: `#<num> : <overrides>`."""
    return [line for line in output.splitlines() if re.match(r"#\d+ : ", line)]


def launched(sweep_dir: Path) -> list[str]:
    """What a real run launched: each job's overrides, as the dry run lists them."""
    jobs = sorted((p for p in sweep_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    return [f"#{p.name} : " + " ".join(yaml.safe_load((p / ".hydra" / "overrides.yaml").read_text()))
            for p in jobs]


QUICK = [o for o in TINY if not o.startswith("budget.steps")] + ["budget.steps=1"]


@pytest.mark.slow
@pytest.mark.parametrize("sweep_args, n_jobs", [
    (["model.n_embd=64,128", "optim.lr=1e-3,3e-3"], 4),
    (["+sweep=tokens_per_param_cpu"], 5),  # a named sweep: its grid comes from hydra.sweeper.params
], ids=["grid", "named"])
def test_the_dry_run_lists_the_jobs_a_real_run_launches(tmp_path: Path, sweep_args: list[str],
                                                        n_jobs: int) -> None:
    quick = [o for o in QUICK if not o.startswith("model.n_embd")]  # swept here
    args = ["--multirun", *quick, *sweep_args, "hydra.sweep.dir=sweep"]
    dry = run_app([*args, "sweep.dry_run=true"], cwd=tmp_path, timeout=60)
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert not (tmp_path / "sweep").exists() and not (tmp_path / "mlflow.db").exists()
    assert "GPU-hours" in dry.stdout and "Throughput: measured on this machine (cpu" in dry.stdout
    real = run_app(args, cwd=tmp_path)
    assert real.returncode == 0, real.stderr[-3000:]
    assert len(job_lines(dry.stdout)) == n_jobs
    assert job_lines(dry.stdout) == launched(tmp_path / "sweep")


@pytest.mark.slow
def test_max_gpu_hours_refuses_a_sweep_that_is_too_large_before_anything_launches(tmp_path: Path) -> None:
    tracked = [o for o in QUICK if o != "tracking=none"] + ["budget.steps=null", "budget.time=2h", "device=cuda"]
    result = run_app(["--multirun", *tracked, "model.n_embd=64,128", "hydra.sweep.dir=sweep",
                      "sweep.max_gpu_hours=3"], cwd=tmp_path, timeout=60)
    assert result.returncode == 2, result.stderr[-3000:]
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: sweep.max_gpu_hours=3: this sweep of 2 job(s) is expected to need "
                           "4.01 GPU-hours")  # 2 h of training each, start-up and evaluations
    assert os.listdir(tmp_path) == []  # no job, no sweep dir, no MLflow parent run


@pytest.mark.slow
def test_an_optuna_dry_run_reads_the_study_and_creates_nothing(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path}/optuna.db"
    args = ["--multirun", "+sweep=lr_search_cpu", *QUICK, "model.n_layer=1,2", "hydra.sweep.dir=sweep",
            f"hydra.sweeper.storage={storage}", "sweep.dry_run=true"]
    fresh = run_app(args, cwd=tmp_path)
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    assert os.listdir(tmp_path) == []
    assert "0 of 8 trials done, 8 to run" in fresh.stdout
    assert "optim.lr: tag(log, interval(0.0003, 0.01))" in fresh.stdout
    assert "model.n_layer: choice(1, 2)" in fresh.stdout
    assert "Trials are sampled at run time" in fresh.stdout
    study = optuna.create_study(study_name="lr_search_cpu", storage=storage)
    study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=1.0))
    continued = run_app(args, cwd=tmp_path)
    assert "1 of 8 trials done, 7 to run" in continued.stdout
    assert "Total: 7 job(s)" in continued.stdout
