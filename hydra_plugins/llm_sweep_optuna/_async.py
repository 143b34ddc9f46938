"""Asynchronous trials: `n_jobs` in flight, each slot refilled as soon as its trial ends.

A batch waits for its slowest trial, and a pruned trial leaves its slot idle until the
batch ends. Here the sweeper keeps a submitit job handle per running trial; when a job
ends (finished, failed or pruned) its result is told to the study and the next trial is
asked for and submitted at once. Trial numbers are job numbers, so the job directories of
a continued study never overwrite earlier ones.
"""
from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import optuna
from hydra.core.utils import JobReturn

from hydra_plugins.llm_sweep_optuna._submit import SubmititJobs
from hydra_plugins.llm_sweep_optuna._trials import StudyTrials

log = logging.getLogger(__name__)


@dataclass
class Running:
    trial: optuna.Trial
    jobs: List[Any] = field(default_factory=list)  # submitit handles, one per seed, as submitted
    returns: Dict[int, JobReturn] = field(default_factory=dict)  # by job index, once ended

    def pending(self) -> Dict[Tuple[int, int], Any]:
        return {(self.trial.number, i): job for i, job in enumerate(self.jobs) if i not in self.returns}


def run_async(trials: StudyTrials, jobs: SubmititJobs, n_jobs: int, to_run: int,
              deadline: Optional[float]) -> List[JobReturn]:
    """Run `to_run` trials, `n_jobs` at a time, until done, the deadline (time.monotonic)
    passes or too many fail; returns the jobs' results in trial order.

    No trial starts after the deadline, nor while the failure rate is above the limit once
    `n_jobs` trials have finished (running ones still finish and count). Whatever ends the
    sweep early (Ctrl-C, a launcher error), every trial it started is recorded: its result
    if its job had ended, else FAIL, with its job cancelled.
    """
    running: Dict[int, Running] = {}
    returns: Dict[int, JobReturn] = {}
    launched = 0
    try:
        with ctrl_c_raised_between_steps() as check_interrupt:
            while True:
                while (len(running) < n_jobs and launched < to_run and not past(deadline)
                       and not trials.failures.exceeded(min_finished=min(n_jobs, to_run))):
                    launched += 1
                    start(trials, jobs, running)
                    check_interrupt()
                if not running:
                    break
                pending = {key: job for entry in running.values() for key, job in entry.pending().items()}
                for number, index in jobs.wait_any(pending, check_interrupt):
                    entry = running[number]
                    entry.returns[index] = returns[trials.job_number(entry.trial, index)] = jobs.result(
                        entry.jobs[index])
                    if len(entry.returns) == trials.runs_per_trial:  # the trial's every seed has ended
                        trials.record(running.pop(number).trial, [entry.returns[i] for i in sorted(entry.returns)])
    except BaseException as error:
        abandon(trials, jobs, running, error)
        raise
    if launched < to_run and past(deadline):
        log.info("Timeout: %d of %d trials started before the sweep's time ran out", launched, to_run)
    return [returns[n] for n in sorted(returns)]


@contextlib.contextmanager
def ctrl_c_raised_between_steps() -> Iterator[Callable[[], None]]:
    """Ctrl-C as a flag that the loop turns into KeyboardInterrupt between its steps.

    Python's own KeyboardInterrupt is raised wherever the main thread happens to be, and
    one raised inside a finalizer (a database connection being collected, say) is printed
    and dropped: the sweep would go on as if never interrupted. Here the signal only sets
    a flag, read after each submission and at each poll of the jobs; a second Ctrl-C
    raises at once. Outside the main thread (no signal handlers there) nothing changes.
    """
    flag = threading.Event()

    def check() -> None:
        if flag.is_set():
            raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield check
        return

    def on_sigint(signum: int, frame: Any) -> None:
        if flag.is_set():
            raise KeyboardInterrupt
        flag.set()

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield check
    finally:
        signal.signal(signal.SIGINT, previous)


def start(trials: StudyTrials, jobs: SubmititJobs, running: Dict[int, Running]) -> None:
    trial = trials.ask()
    entry = running[trial.number] = Running(trial)  # recorded FAIL if a submission fails
    for index, overrides in enumerate(trials.job_overrides(trial)):
        entry.jobs.append(jobs.submit(overrides, job_num=trials.job_number(trial, index)))


def abandon(trials: StudyTrials, jobs: SubmititJobs, running: Dict[int, Running],
            error: BaseException) -> None:
    """Record every running trial: the result of a job that has ended, else FAIL (and
    cancel the job), so the study holds no RUNNING trial and a rerun continues it."""
    if isinstance(error, KeyboardInterrupt):
        reason = "interrupted: the sweep was stopped before this trial ended"
    else:
        reason = f"launcher: {type(error).__name__}: {error}"
    failed = []
    for number, entry in running.items():
        ended = len(entry.jobs) == trials.runs_per_trial and all(
            i in entry.returns or jobs.has_result(job) for i, job in enumerate(entry.jobs))
        if ended:
            trials.record(entry.trial, [entry.returns.get(i) or jobs.result(job) for i, job in enumerate(entry.jobs)])
            continue
        for i, job in enumerate(entry.jobs):
            if i not in entry.returns:
                jobs.cancel(job)
        trials.fail(entry.trial, reason)
        failed.append(number)
    if failed:
        log.warning("Sweep stopped (%s): trial(s) %s recorded FAIL, their jobs cancelled",
                    type(error).__name__, failed)


def past(deadline: Optional[float]) -> bool:
    return deadline is not None and time.monotonic() >= deadline
