"""The Optuna sweeper: ask a batch of trials, launch them as Hydra jobs, tell the results.

The study is created once, here, before any job starts (concurrent creation of a fresh
SQLite study races). Each job learns its trial through `hydra.job.env_set`, so it can
report intermediate values to the pruner (llm_sweep.sweeping.pruning).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import List, Optional, Sequence

import optuna
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn
from hydra.errors import CompactHydraException
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig
from optuna.trial import TrialState

from hydra_plugins.llm_sweep_optuna._outcome import trial_outcome
from hydra_plugins.llm_sweep_optuna._results import write_results
from hydra_plugins.llm_sweep_optuna._search_space import SearchSpace, format_value, parse_search_space
from hydra_plugins.llm_sweep_optuna.config import OptunaSweeperConf
from llm_sweep.sweeping.pruning import (
    PRUNER_ATTR,
    STORAGE_ENV,
    STUDY_ENV,
    TRIAL_ENV,
    build_pruner,
)

log = logging.getLogger(__name__)

SQLITE = "sqlite:///"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


class TooManyFailedTrials(CompactHydraException):
    """More of this sweep's trials failed than `max_failure_rate` allows (Hydra prints it as one message)."""


class OptunaSweeperImpl(Sweeper):
    def __init__(self, conf: OptunaSweeperConf) -> None:  # conf: checked by the front class
        self.conf = conf
        self.pruner = None if conf.pruner in (None, "none") else conf.pruner
        self.storage = absolute_storage_url(conf.storage)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: List[str]) -> List[List[JobReturn]]:
        """Run trials until the study holds `n_trials` finished ones; returns the job results by batch."""
        conf = self.conf
        space = parse_search_space([f"{key}={value}" for key, value in conf.params.items()] + list(arguments))
        study = self._create_study(space)
        fail_stale_trials(study)
        finished = study.get_trials(deepcopy=False, states=FINISHED)
        remaining = conf.n_trials - len(finished)
        if conf.sampler == "grid" and space.grid_points_left(finished) < remaining:
            remaining = space.grid_points_left(finished)
            log.info("Only %d grid points are left to evaluate", remaining)
        log.info("Study '%s' in %s: %d of %d trials done, %d to run, %d per batch; search space: %s",
                 study.study_name, self.storage or "memory", len(finished), conf.n_trials,
                 max(remaining, 0), conf.n_jobs, space.distributions)

        batches: List[List[JobReturn]] = []
        n_finished = n_failed = 0
        last_error: Optional[str] = None
        while remaining > 0:
            trials = [study.ask(space.distributions) for _ in range(min(conf.n_jobs, remaining))]
            # Job numbers follow trial numbers (asked together, they are consecutive), so the
            # job dirs of a continued study do not overwrite those of its earlier trials.
            returns = self._launch(study, space, trials, job_idx=trials[0].number)
            for trial, ret in zip(trials, returns):
                error = self._tell(study, trial, ret)
                if error is not None:
                    n_failed, last_error = n_failed + 1, error
            batches.append(list(returns))
            n_finished += len(returns)
            remaining -= len(returns)
            if n_failed and n_failed / n_finished > conf.max_failure_rate:
                where = f"is saved in {self.storage}" if self.storage else "was in memory and is lost"
                raise TooManyFailedTrials(
                    f"{n_failed} of {n_finished} trials failed in this sweep, above "
                    f"max_failure_rate={conf.max_failure_rate}; last error: {last_error} "
                    f"(each FAIL trial has its 'error' attribute). Study '{study.study_name}' {where}.")
        write_results(study, Path(self.config.hydra.sweep.dir))
        return batches

    def _create_study(self, space: SearchSpace) -> optuna.Study:
        conf = self.conf
        database = sqlite_path(self.storage)
        if database is not None:
            Path(database.split("?")[0]).parent.mkdir(parents=True, exist_ok=True)
        study = optuna.create_study(
            study_name=conf.study_name or self.config.hydra.job.name,
            storage=self.storage,
            sampler=build_sampler(conf.sampler, conf.seed, space),
            pruner=build_pruner(self.pruner, conf.pruner_warmup_steps),
            direction=conf.direction,
            load_if_exists=True,
        )
        if conf.seed is not None and conf.sampler != "grid" and study.trials:
            # A resumed study must not replay its first sweep's samples. (The grid sampler
            # keeps its seed: it maps earlier trials to grid points through it.)
            study.sampler = build_sampler(conf.sampler, conf.seed + len(study.trials), space)
        # Jobs rebuild the pruner from the study, so they prune as this sweep is configured.
        study.set_user_attr(PRUNER_ATTR, {"name": self.pruner, "warmup_steps": conf.pruner_warmup_steps})
        return study

    def _launch(self, study: optuna.Study, space: SearchSpace, trials: List[optuna.Trial],
                job_idx: int) -> Sequence[JobReturn]:
        job_overrides = []
        for trial in trials:
            overrides = space.trial_overrides(trial.params)
            trial.set_user_attr("overrides", overrides)
            job_overrides.append(overrides + self._identity_overrides(study, trial))
        try:
            return self.launcher.launch(job_overrides, initial_job_idx=job_idx)
        except BaseException as error:
            # The launcher itself failed (e.g. a job was killed): no trial of the batch may stay RUNNING.
            for trial in trials:
                trial.set_user_attr("error", f"launcher: {type(error).__name__}: {error}")
                tell(study, trial, TrialState.FAIL)
            raise

    def _identity_overrides(self, study: optuna.Study, trial: optuna.Trial) -> List[str]:
        if self.storage is None:  # an in-memory study cannot be reached from a job
            return []
        env = "++hydra.job.env_set"  # ++: add the key, or replace one the user set
        return [f"{env}.{TRIAL_ENV}={trial.number}",
                f"{env}.{STORAGE_ENV}={format_value(self.storage)}",
                f"{env}.{STUDY_ENV}={format_value(study.study_name)}"]

    def _tell(self, study: optuna.Study, trial: optuna.Trial, ret: JobReturn) -> Optional[str]:
        """Record the job's result in its trial; returns the error of a failed one."""
        outcome = trial_outcome(ret)
        if ret.hydra_cfg is not None:
            trial.set_user_attr("output_dir", str(ret.hydra_cfg.hydra.runtime.output_dir))
        if outcome.error is not None:
            trial.set_user_attr("error", outcome.error)
            log.warning("Trial %d failed: %s", trial.number, outcome.error)
        elif outcome.state == TrialState.PRUNED:
            log.info("Trial %d pruned", trial.number)
        tell(study, trial, outcome.state, outcome.value)
        return outcome.error


def tell(study: optuna.Study, trial: optuna.Trial | int, state: TrialState,
         value: Optional[float] = None) -> None:
    try:
        study.tell(trial, value, state=state)
    except RuntimeError as error:
        # GridSampler calls study.stop() once every grid point is done; outside
        # study.optimize() that raises, after the trial has been stored.
        if not (isinstance(study.sampler, optuna.samplers.GridSampler) and "Study.stop" in str(error)):
            raise


def fail_stale_trials(study: optuna.Study) -> None:
    """Mark FAIL the trials an interrupted sweep left RUNNING, so they count as done.

    This assumes one sweep at a time per study: a second, concurrent sweep would lose its
    running trials.
    """
    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if stale:
        log.warning("Marking %d trial(s) left RUNNING by an interrupted sweep as FAIL: %s",
                    len(stale), [t.number for t in stale])
    for trial in stale:
        tell(study, trial.number, TrialState.FAIL)


def build_sampler(name: str, seed: Optional[int], space: SearchSpace) -> optuna.samplers.BaseSampler:
    samplers = optuna.samplers
    if name == "tpe":
        # The constant liar keeps the trials of one batch from all sampling the same point.
        return samplers.TPESampler(seed=seed, constant_liar=True)
    if name == "random":
        return samplers.RandomSampler(seed=seed)
    if name == "cmaes":
        return samplers.CmaEsSampler(seed=seed)
    if name == "qmc":
        return samplers.QMCSampler(seed=seed)
    return samplers.GridSampler(space.grid(), seed=seed)


def absolute_storage_url(url: Optional[str]) -> Optional[str]:
    """`url` with a relative SQLite path made absolute: jobs may run in another directory."""
    path = sqlite_path(url)
    return url if path is None else SQLITE + os.path.abspath(path)


def sqlite_path(url: Optional[str]) -> Optional[str]:
    """The database file of a SQLite URL; None for other storages."""
    if url is None or not url.startswith(SQLITE) or url == SQLITE + ":memory:":
        return None
    return url[len(SQLITE):]
