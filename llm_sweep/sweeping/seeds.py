"""`sweep.seeds=N`: every job of a sweep repeated at seed, seed+1, ..., seed+N-1.

`seed` (1337 unless set) is the first of the N seeds, so `sweep.seeds=1` is the sweep as
it was. The seeds become the sweep's first parameter: `--multirun model.n_embd=64,128
sweep.seeds=3` launches exactly the jobs of `--multirun seed=1337,1338,1339
model.n_embd=64,128`. First means outermost: every config runs at the first seed before any
runs at the second, so a sweep stopped early has each config at least once, and a rerun
into the same directory with a larger N adds jobs after the earlier ones' numbers.

Hydra builds the sweeper from `hydra.sweeper` and reads the task overrides only after the
`on_multirun_start` callbacks, so this callback, listed first in conf/config.yaml, puts
the seeds into `hydra.sweeper.params` there and takes `sweep.seeds=N` and a plain
`seed=S` off the task overrides (each job is one seed; a job's folder and run name read as
if the seeds had been typed). The dry run and the GPU-hour limit, which come next, see the
seeds. With the Optuna sweeper the seeds go to `hydra.sweeper.seeds` instead: every trial
runs once per seed and its value is their mean (a seed in its search space would be
sampled like a hyperparameter, so that is refused).
"""
from __future__ import annotations

from typing import Any

from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from llm_sweep.core.config import RunConfig
from llm_sweep.core.console import exit_with_error
from llm_sweep.core.errors import ConfigError
from llm_sweep.core.rules import rule_of
from llm_sweep.sweeping.preview_callback import sweep_settings

SEED_KEY = "seed"
SEEDS_KEY = "sweep.seeds"


class SweepSeedsCallback(Callback):
    """Adds `sweep.seeds` to a sweep before its sweeper is built; refuses it on a single run."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            add_seeds(config)
        except ConfigError as error:
            exit_with_error(error)

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        settings = sweep_settings(config)
        if settings is not None and settings.seeds > 1:
            exit_with_error(f"{SEEDS_KEY}={settings.seeds} repeats the jobs of a sweep: add --multirun "
                            f"(a single run has one seed: {SEED_KEY}=N)")


def add_seeds(config: DictConfig) -> None:
    """The sweep's seeds as its first parameter; nothing to do with sweep.seeds=1."""
    settings = sweep_settings(config)  # a bad sweep.seeds exits here, naming the key
    task = [str(o) for o in OmegaConf.to_container(config.hydra.overrides.task, resolve=False)]
    keyed = {override.key_or_group: override for override in _parse(task)}
    if SEEDS_KEY in keyed and keyed[SEEDS_KEY].is_sweep_override():
        raise ConfigError(f"{SEEDS_KEY} takes one number >= 1, not a sweep ({keyed[SEEDS_KEY].input_line})")
    if settings is None or settings.seeds == 1:
        return
    n = settings.seeds
    sweeper = config.hydra.sweeper
    trial_seeds = "seeds" in sweeper  # a sweeper that runs each trial at several seeds (Optuna)
    if not trial_seeds and not hasattr(get_class(sweeper._target_), "split_arguments"):
        raise ConfigError(f"{SEEDS_KEY}={n} needs Hydra's basic sweeper or the Optuna one, not "
                          f"{sweeper._target_}")
    params = OmegaConf.to_container(sweeper.params, resolve=False) if sweeper.get("params") else {}
    if SEED_KEY in params or (SEED_KEY in keyed and keyed[SEED_KEY].is_sweep_override()):
        given = f"{SEED_KEY}={params[SEED_KEY]}" if SEED_KEY in params else keyed[SEED_KEY].input_line
        raise ConfigError(f"{SEEDS_KEY}={n} sweeps {SEED_KEY}, and the sweep already does ({given}): "
                          f"give one base {SEED_KEY}=N, or list the seeds without {SEEDS_KEY}")
    seeds = seed_range(int(config[SEED_KEY]), n)
    if trial_seeds:  # each trial runs at every seed; its value is their mean
        sweeper.seeds = seeds
    else:
        sweeper.params = {SEED_KEY: ",".join(map(str, seeds)), **params}
    config.hydra.overrides.task = [o for o in task if _key(o) not in (SEED_KEY, SEEDS_KEY)]


def seed_range(base: int, n: int) -> list[int]:
    """base, base+1, ..., base+n-1, each within the seed's own rule."""
    last = base + n - 1
    allowed = rule_of(RunConfig.__dataclass_fields__[SEED_KEY])
    if allowed.problem(SEED_KEY, base):
        raise ConfigError(allowed.problem(SEED_KEY, base))
    if allowed.problem(SEED_KEY, last):
        raise ConfigError(f"{SEEDS_KEY}={n} from {SEED_KEY}={base} would run {SEED_KEY}={last}: "
                          f"a seed must be {allowed.bounds()}")
    return list(range(base, last + 1))


def _parse(overrides: list[str]) -> list[Any]:
    parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
    return parser.parse_overrides(overrides)


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")
