"""What the batched and the asynchronous sweeps share: how many trials to run, a trial's
job overrides, a job's result recorded in its trial, and the count of failed trials."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import List, Optional, Sequence

import optuna
from hydra.core.utils import JobReturn
from hydra.errors import CompactHydraException
from optuna.trial import TrialState

from hydra_plugins.llm_sweep_optuna._outcome import TrialOutcome, trial_outcome
from hydra_plugins.llm_sweep_optuna._search_space import SearchSpace, format_value
from hydra_plugins.llm_sweep_optuna.pruning import STORAGE_ENV, STUDY_ENV, TRIAL_ENV

log = logging.getLogger(__name__)

SEED_KEY = "seed"  # the run's seed: what `seeds` sets in each of a trial's jobs

# RUNNING too: a sweep starts by marking FAIL the trials an interrupted one left running.
COUNTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)


class TooManyFailedTrials(CompactHydraException):
    """More of this sweep's trials failed than `max_failure_rate` allows (Hydra prints it as one message)."""


def trials_to_run(n_trials: int, sampler: str, space: SearchSpace,
                  trials: List[optuna.trial.FrozenTrial]) -> int:
    """Trials this sweep starts: up to `n_trials` in the study (those done, or left
    RUNNING, count), no more than the grid points left for the grid sampler."""
    done = [t for t in trials if t.state in COUNTED]
    to_run = max(n_trials - len(done), 0)
    if sampler == "grid":
        to_run = min(to_run, space.grid_points_left(done))
    return to_run


@dataclass
class FailureCount:
    max_rate: float
    finished: int = 0
    failed: int = 0
    last_error: Optional[str] = None

    def add(self, error: Optional[str]) -> None:
        self.finished += 1
        if error is not None:
            self.failed, self.last_error = self.failed + 1, error

    def exceeded(self, min_finished: int = 0) -> bool:
        """More than `max_rate` of the finished trials failed, once `min_finished` have."""
        return (self.finished >= min_finished and self.failed > 0
                and self.failed / self.finished > self.max_rate)

    def error(self, study: optuna.Study, storage: Optional[str]) -> TooManyFailedTrials:
        where = f"is saved in {storage}" if storage else "was in memory and is lost"
        return TooManyFailedTrials(
            f"{self.failed} of {self.finished} trials failed in this sweep, above "
            f"max_failure_rate={self.max_rate}; last error: {self.last_error} "
            f"(each FAIL trial has its 'error' attribute). Study '{study.study_name}' {where}.")


class StudyTrials:
    """Asks the study for trials, gives each its job overrides, and records each job's result."""

    def __init__(self, study: optuna.Study, space: SearchSpace, storage: Optional[str],
                 max_failure_rate: float, seeds: Sequence[int] = ()) -> None:
        self.study = study
        self.space = space
        self.storage = storage
        self.failures = FailureCount(max_failure_rate)
        self.seeds = list(seeds)

    @property
    def runs_per_trial(self) -> int:
        return max(len(self.seeds), 1)

    def job_number(self, trial: optuna.Trial, run: int = 0) -> int:
        """The job number of the trial's `run`-th seed: trials keep blocks of consecutive
        numbers, so a continued study's job directories never overwrite earlier ones."""
        return trial.number * self.runs_per_trial + run

    def ask(self) -> optuna.Trial:
        return self.study.ask(self.space.distributions)

    def job_overrides(self, trial: optuna.Trial) -> List[List[str]]:
        """The overrides of each of the trial's jobs (one per seed): its sampled params, the
        seed, or else its identity for the pruning reporter. The identity travels in
        `hydra.job.env_set`, so a requeued job reports to the same trial."""
        overrides = self.space.trial_overrides(trial.params)
        trial.set_user_attr("overrides", overrides)
        # An in-memory study cannot be reached from a job; the runs of a trial of several
        # seeds report nothing while they train (no pruner judges them, see config.py).
        if self.storage is not None and len(self.seeds) < 2:
            env = "++hydra.job.env_set"  # ++: add the key, or replace one the user set
            overrides = [*overrides, f"{env}.{TRIAL_ENV}={trial.number}",
                         f"{env}.{STORAGE_ENV}={format_value(self.storage)}",
                         f"{env}.{STUDY_ENV}={format_value(self.study.study_name)}"]
        if not self.seeds:
            return [overrides]
        trial.set_user_attr("seeds", self.seeds)
        return [[*overrides, f"{SEED_KEY}={seed}"] for seed in self.seeds]

    def record(self, trial: optuna.Trial, rets: Sequence[JobReturn]) -> None:
        """Tell the study how the trial's jobs ended (one per seed: their mean), and count a failure."""
        outcome = combined_outcome([trial_outcome(ret) for ret in rets])
        dirs = [str(ret.hydra_cfg.hydra.runtime.output_dir) for ret in rets if ret.hydra_cfg is not None]
        if len(dirs) == 1:
            trial.set_user_attr("output_dir", dirs[0])
        elif dirs:
            trial.set_user_attr("output_dirs", dirs)  # one per seed
        if outcome.error is not None:
            trial.set_user_attr("error", outcome.error)
            log.warning("Trial %d failed: %s", trial.number, outcome.error)
        elif outcome.state == TrialState.PRUNED:
            log.info("Trial %d pruned", trial.number)
        tell(self.study, trial, outcome.state, outcome.value)
        self.failures.add(outcome.error)

    def fail(self, trial: optuna.Trial, error: str) -> None:
        """Record FAIL a trial whose job did not run to its end (launcher error, interrupt)."""
        trial.set_user_attr("error", error)
        tell(self.study, trial, TrialState.FAIL)


def combined_outcome(outcomes: Sequence[TrialOutcome]) -> TrialOutcome:
    """One trial's outcome from its runs' (one per seed): the first failure, else pruned if
    any run was, else COMPLETE at the mean of their values."""
    failed = next((o for o in outcomes if o.state == TrialState.FAIL), None)
    if failed is not None:
        return failed
    if any(o.state == TrialState.PRUNED for o in outcomes):
        return TrialOutcome(TrialState.PRUNED)
    return TrialOutcome(TrialState.COMPLETE, sum(o.value for o in outcomes) / len(outcomes))


def tell(study: optuna.Study, trial: optuna.Trial | int, state: TrialState,
         value: Optional[float] = None) -> None:
    try:
        study.tell(trial, value, state=state)
    except RuntimeError as error:
        # GridSampler calls study.stop() once every grid point is done; outside
        # study.optimize() that raises, after the trial has been stored.
        if not (isinstance(study.sampler, optuna.samplers.GridSampler) and "Study.stop" in str(error)):
            raise
