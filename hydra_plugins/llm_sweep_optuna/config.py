"""The Optuna sweeper's config schema (`hydra.sweeper.*`), registered in Hydra's ConfigStore.

Kept apart from the Sweeper classes, as Hydra's own plugins do, so the front module, the
implementation and the results writer all import it without importing each other.
No `from __future__ import annotations` here: Hydra executes the plugin modules before
they are in sys.modules, where dataclasses cannot resolve string annotations.
"""
import importlib.util
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from hydra.core.config_store import ConfigStore

from hydra_plugins.llm_sweep_optuna.pruning import PRUNERS
from llm_sweep.core.budget import is_positive_duration
from llm_sweep.core.rules import rule

SAMPLERS = ("tpe", "cmaes", "random", "grid", "qmc")
DIRECTIONS = ("minimize", "maximize")


def _pruner_has_storage(conf: "OptunaSweeperConf", p: str) -> Optional[str]:
    if conf.pruner not in (None, "none") and conf.storage is None:
        return (f"{p}pruner={conf.pruner!r} needs a storage ({p}storage is null): "
                "jobs report intermediate values through it")
    return None


def _hyperband_has_min_resource(conf: "OptunaSweeperConf", p: str) -> Optional[str]:
    if conf.pruner == "hyperband" and conf.pruner_min_resource is None:
        return (f"{p}pruner=hyperband needs {p}pruner_min_resource: the tokens of its smallest "
                "bracket, e.g. the tokens of the first evaluation")
    return None


def _cmaes_installed(conf: "OptunaSweeperConf", p: str) -> Optional[str]:
    # Optuna imports cmaes only at the first sample, deep into a sweep.
    if conf.sampler == "cmaes" and importlib.util.find_spec("cmaes") is None:
        return f"{p}sampler=cmaes needs the cmaes package: pip install cmaes"
    return None


def _seeds_without_pruner(conf: "OptunaSweeperConf", p: str) -> Optional[str]:
    if len(conf.seeds) > 1 and conf.pruner not in (None, "none"):
        return (f"{p}seeds={list(conf.seeds)} runs each trial at {len(conf.seeds)} seeds and judges their "
                f"mean at the end; {p}pruner={conf.pruner} would judge one seed's curve: set {p}pruner=null")
    return None


def _distinct_seeds(conf: "OptunaSweeperConf", p: str) -> Optional[str]:
    if len(set(conf.seeds)) != len(conf.seeds):
        return f"{p}seeds={list(conf.seeds)} repeats a seed: each run of a trial needs a seed of its own"
    return None


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.llm_sweep_optuna.optuna_sweeper.OptunaSweeper"
    sampler: str = field(default="tpe", metadata=rule(choices=SAMPLERS))
    seed: Optional[int] = field(default=None, metadata=rule(ge=0, lt=2**32))  # sampler seed; None: random
    direction: str = field(default="minimize", metadata=rule(choices=DIRECTIONS))
    study_name: Optional[str] = None  # None: the Hydra job name
    # Any RDB URL (relative SQLite paths resolve against the launch directory); None: in memory.
    # The same storage and study name continue an earlier study.
    storage: Optional[str] = "sqlite:///optuna.db"
    # Finished trials wanted in the study, counting earlier sweeps' trials.
    n_trials: int = field(default=20, metadata=rule(ge=1))
    # Trials running at once through the configured launcher.
    n_jobs: int = field(default=2, metadata=rule(ge=1))
    # true: a trial that ends (finished, failed or pruned) is replaced at once, so n_jobs
    # trials stay in flight; needs a launcher that returns job handles (the submitit ones).
    # Hydra's basic launcher runs jobs in this process, one by one: trials then run in
    # batches of n_jobs, each batch waiting for its slowest trial (as with false).
    asynchronous: bool = True
    # Wall-clock limit of this sweep (3600, 90m, 2h): no trial starts after it, running ones
    # finish. None: no limit.
    timeout: Optional[str] = field(default=None, metadata=rule(
        test=is_positive_duration, expect="a duration > 0, e.g. 2h, 90m or a number of seconds"))
    # Largest fraction of this sweep's finished trials that may fail before the sweep stops
    # with an error; a failed trial is recorded FAIL with its error either way.
    max_failure_rate: float = field(default=0.5, metadata=rule(ge=0, le=1))
    # Jobs report val/loss to it at each evaluation, at step = tokens seen.
    pruner: Optional[str] = field(default=None, metadata=rule(choices=PRUNERS))
    # Tokens a trial trains on before the pruner may stop it (median: warm-up; sha: first
    # rung, None: estimated by Optuna; hyperband: smallest bracket, required).
    pruner_min_resource: Optional[int] = field(default=None, metadata=rule(ge=1))
    # The search space, in Hydra's override grammar, e.g. {optim.lr: "tag(log,interval(1e-4,1e-2))"};
    # sweep overrides on the command line are added to it, plain ones are fixed for every trial.
    params: Dict[str, str] = field(default_factory=dict)
    # Each trial runs once per seed (its jobs' `seed=S`), and its value is their mean: a
    # seed-averaged objective. Empty: one run at the job's own seed. `sweep.seeds=N` sets it
    # to seed, seed+1, ..., seed+N-1. A trial fails if any of its runs fails.
    seeds: List[int] = field(default_factory=list, metadata=rule(ge=0, lt=2**32))
    # Where the best trial's params are written as a Hydra config a run can apply (e.g.
    # conf/mup/tuned.yaml, applied with `+mup=tuned`), relative to the sweep directory or
    # absolute; None: not written. `overlay_keys` adds the sweep's own values of those keys
    # (what the params were tuned with, e.g. model.parametrization, model.base_width).
    overlay: Optional[str] = None
    overlay_keys: List[str] = field(default_factory=list)

    # Not a field: no annotation.
    cross_field_rules = (_pruner_has_storage, _hyperband_has_min_resource, _cmaes_installed,
                         _seeds_without_pruner, _distinct_seeds)


def register() -> None:
    ConfigStore.instance().store(group="hydra/sweeper", name="optuna", node=OptunaSweeperConf,
                                 provider="llm_sweep")
