"""What an Optuna sweep would run, without running it (a sweep's dry run).

Trials are sampled at run time, so the preview gives the number of trials left to run
(the study is read, never created), the search space, a few random points of it, and the
corners of the space (every choice, each interval's ends), where a job's cost is largest
or smallest when it grows with a parameter (size, batch, budget).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Mapping, Sequence

import optuna
from optuna.distributions import CategoricalDistribution

from hydra_plugins.llm_sweep_optuna._impl import absolute_storage_url, sqlite_path
from hydra_plugins.llm_sweep_optuna._search_space import SearchSpace, parse_search_space
from hydra_plugins.llm_sweep_optuna._submit import can_run_asynchronously
from hydra_plugins.llm_sweep_optuna._trials import trials_to_run
from hydra_plugins.llm_sweep_optuna.config import OptunaSweeperConf
from llm_sweep.core.rules import check

MAX_CORNERS = 32


@dataclass(frozen=True)
class StudyPreview:
    conf: OptunaSweeperConf
    study_name: str
    done: int  # trials the study already holds (those left RUNNING will be marked FAIL)
    to_run: int
    space: SearchSpace
    asynchronous: bool  # the launcher keeps n_jobs trials in flight
    samples: List[List[str]]  # overrides of random points of the space
    corners: List[List[str]]  # overrides at the corners of the space (at most MAX_CORNERS)

    @property
    def runs_per_trial(self) -> int:
        """Jobs per trial: one per seed of `seeds`, or one."""
        return max(len(self.conf.seeds), 1)

    @property
    def jobs_to_run(self) -> int:
        return self.to_run * self.runs_per_trial


def preview_study(settings: Mapping[str, Any], arguments: Sequence[str], job_name: str,
                  launcher_target: str, n_samples: int = 3) -> StudyPreview:
    """The preview of the sweep that `hydra.sweeper` settings and the command line describe."""
    conf = OptunaSweeperConf(**settings)
    check(conf, "hydra.sweeper.")
    space = parse_search_space([f"{key}={value}" for key, value in conf.params.items()] + list(arguments))
    name = conf.study_name or job_name
    trials = existing_trials(absolute_storage_url(conf.storage), name)
    return StudyPreview(conf, name, len(trials), trials_to_run(conf.n_trials, conf.sampler, space, trials),
                        space, conf.asynchronous and can_run_asynchronously(launcher_target),
                        sample_points(space, n_samples, conf.seed), corners(space))


def existing_trials(storage: str | None, study_name: str) -> List[optuna.trial.FrozenTrial]:
    """The study's trials; none when the storage or the study does not exist yet (neither is created)."""
    database = sqlite_path(storage)
    if storage is None or (database is not None and not Path(database.split("?")[0]).exists()):
        return []
    try:
        return optuna.load_study(study_name=study_name, storage=storage).get_trials(deepcopy=False)
    except KeyError:  # no such study in the storage
        return []


def sample_points(space: SearchSpace, n: int, seed: int | None) -> List[List[str]]:
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "new study created" line
    try:
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
        return [space.trial_overrides(study.ask(space.distributions).params) for _ in range(n)]
    finally:
        optuna.logging.set_verbosity(verbosity)


def corners(space: SearchSpace) -> List[List[str]]:
    ends = []
    for param in space.params:
        dist = param.distribution
        ends.append(list(dist.choices) if isinstance(dist, CategoricalDistribution) else [dist.low, dist.high])
    keys = [param.key for param in space.params]
    points = itertools.islice(itertools.product(*ends), MAX_CORNERS)
    return [space.trial_overrides(dict(zip(keys, point))) for point in points]
