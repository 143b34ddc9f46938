"""The Optuna sweeper: trials launched as Hydra jobs, their results told to the study.

With a submitit launcher (local_parallel, the Slurm presets) trials run asynchronously:
`n_jobs` stay in flight and each one that ends is replaced at once (`_async`). Hydra's
basic launcher runs jobs in this process one by one, so there trials run in batches of
`n_jobs`, as with `asynchronous=false`.

The study is created once, here, before any job starts (concurrent creation of a fresh
SQLite study races). Each job learns its trial through `hydra.job.env_set`, so it can
report intermediate values to the pruner (hydra_plugins.llm_sweep_optuna.pruning).
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import List, Optional, Sequence

import optuna
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from hydra_plugins.llm_sweep_optuna._async import past, run_async
from hydra_plugins.llm_sweep_optuna._results import write_overlay, write_results
from hydra_plugins.llm_sweep_optuna._search_space import SearchSpace, parse_search_space
from hydra_plugins.llm_sweep_optuna._submit import submitit_jobs
from hydra_plugins.llm_sweep_optuna._trials import COUNTED, StudyTrials, tell, trials_to_run
from hydra_plugins.llm_sweep_optuna.config import OptunaSweeperConf
from hydra_plugins.llm_sweep_optuna.pruning import PRUNER_ATTR, build_pruner
from llm_sweep.core.budget import parse_duration
from llm_sweep.core.console import exit_with_error

log = logging.getLogger(__name__)

SQLITE = "sqlite:///"


class OptunaSweeperImpl(Sweeper):
    def __init__(self, conf: OptunaSweeperConf) -> None:  # conf: checked by the front class
        self.conf = conf
        self.pruner = None if conf.pruner in (None, "none") else conf.pruner
        self.storage = absolute_storage_url(conf.storage)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        absent = object()
        for key in self.conf.overlay_keys:  # refused before any trial runs, not after the last
            if OmegaConf.select(config, key, default=absent) is absent:
                exit_with_error(f"hydra.sweeper.overlay_keys: {key} is not a key of this sweep's config")
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: List[str]) -> List[List[JobReturn]]:
        """Run trials until the study holds `n_trials` finished ones; returns the job results
        by batch (asynchronous trials: one batch, in trial order)."""
        conf = self.conf
        space = parse_search_space([f"{key}={value}" for key, value in conf.params.items()] + list(arguments))
        study = self._create_study(space)
        fail_stale_trials(study)
        done = len(study.get_trials(deepcopy=False, states=COUNTED))
        to_run = trials_to_run(conf.n_trials, conf.sampler, space, study.get_trials(deepcopy=False))
        jobs = submitit_jobs(self.launcher, self.config) if conf.asynchronous else None
        if conf.asynchronous and jobs is None:
            log.info("%s runs jobs one by one in this process, so trials run in batches of %d, "
                     "each waiting for its slowest trial", type(self.launcher).__name__, conf.n_jobs)
        log.info("Study '%s' in %s: %d of %d trials done, %d to run, %d %s; search space: %s",
                 study.study_name, self.storage or "memory", done, conf.n_trials, to_run, conf.n_jobs,
                 "at a time" if jobs else "per batch", space.distributions)
        trials = StudyTrials(study, space, self.storage, conf.max_failure_rate, conf.seeds)
        deadline = None if conf.timeout is None else time.monotonic() + parse_duration(conf.timeout)
        if jobs is None:
            batches = self._run_batches(trials, to_run, deadline)
        else:
            batches = [run_async(trials, jobs, conf.n_jobs, to_run, deadline)]
            if trials.failures.exceeded():
                raise trials.failures.error(study, self.storage)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        write_results(study, sweep_dir)
        if conf.overlay:
            fixed = {key: OmegaConf.select(self.config, key) for key in conf.overlay_keys}
            write_overlay(study, sweep_dir / conf.overlay, fixed)  # an absolute overlay stays as given
        return batches

    def _run_batches(self, trials: StudyTrials, to_run: int,
                     deadline: Optional[float]) -> List[List[JobReturn]]:
        """Ask `n_jobs` trials, launch them together, wait for all, tell; until done, past
        the deadline, or too many failed."""
        batches: List[List[JobReturn]] = []
        while to_run > 0 and not past(deadline):
            batch = [trials.ask() for _ in range(min(self.conf.n_jobs, to_run))]
            returns = self._launch(trials, batch)
            per_trial = trials.runs_per_trial
            for i, trial in enumerate(batch):
                trials.record(trial, returns[i * per_trial:(i + 1) * per_trial])
            batches.append(list(returns))
            to_run -= len(batch)
            if trials.failures.exceeded():
                raise trials.failures.error(trials.study, self.storage)
        if to_run > 0:
            log.info("Timeout: %d trial(s) not started, the sweep's time ran out", to_run)
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
            pruner=build_pruner(self.pruner, conf.pruner_min_resource),
            direction=conf.direction,
            load_if_exists=True,
        )
        if conf.seed is not None and conf.sampler != "grid" and study.trials:
            # A resumed study must not replay its first sweep's samples. (The grid sampler
            # keeps its seed: it maps earlier trials to grid points through it.)
            study.sampler = build_sampler(conf.sampler, conf.seed + len(study.trials), space)
        # Jobs rebuild the pruner from the study, so they prune as this sweep is configured.
        study.set_user_attr(PRUNER_ATTR, {"name": self.pruner, "min_resource": conf.pruner_min_resource})
        return study

    def _launch(self, trials: StudyTrials, batch: List[optuna.Trial]) -> Sequence[JobReturn]:
        # Job numbers follow trial numbers (asked together, they are consecutive; a trial of
        # several seeds has a block of them), so the job dirs of a continued study do not
        # overwrite those of its earlier trials.
        job_overrides = [job for trial in batch for job in trials.job_overrides(trial)]
        try:
            return self.launcher.launch(job_overrides, initial_job_idx=trials.job_number(batch[0]))
        except BaseException as error:
            # The launcher itself failed (e.g. a job was killed): no trial of the batch may stay RUNNING.
            for trial in batch:
                trials.fail(trial, f"launcher: {type(error).__name__}: {error}")
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
