"""Front of the Optuna sweeper: the config schema and a Sweeper that loads the real one lazily.

Hydra imports every module of `hydra_plugins` at start-up, so this one stays light;
optuna and the implementation (`_impl`) load only when the sweeper is selected.
No `from __future__ import annotations` here: Hydra executes this module before it is in
sys.modules, where dataclasses cannot resolve string annotations.
"""
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

if TYPE_CHECKING:
    from hydra.core.utils import JobReturn


# Written into hydra.sweep.dir at the end of a sweep: name, best_trial, best_params,
# best_value, n_trials and trial counts by state, for sweep-level callbacks and reports.
RESULTS_FILE = "optimization_results.yaml"


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.llm_sweep_optuna.optuna_sweeper.OptunaSweeper"
    sampler: str = "tpe"  # tpe | cmaes | random | grid | qmc
    seed: Optional[int] = None  # sampler seed; None: random
    direction: str = "minimize"  # minimize | maximize
    study_name: Optional[str] = None  # None: the Hydra job name
    # Any RDB URL (relative SQLite paths resolve against the launch directory); None: in memory.
    # The same storage and study name continue an earlier study.
    storage: Optional[str] = "sqlite:///optuna.db"
    n_trials: int = 20  # finished trials wanted in the study, counting earlier sweeps' trials
    n_jobs: int = 2  # trials per batch, launched together through the configured launcher
    # Largest fraction of this sweep's finished trials that may fail before the sweep stops
    # with an error; a failed trial is recorded FAIL with its error either way.
    max_failure_rate: float = 0.5
    pruner: Optional[str] = None  # none | median | hyperband; jobs report val/loss to it
    pruner_warmup_steps: int = 0  # median: no pruning before this step (an optimizer step)
    # The search space, in Hydra's override grammar, e.g. {optim.lr: "tag(log,interval(1e-4,1e-2))"};
    # sweep overrides on the command line are added to it, plain ones are fixed for every trial.
    params: Dict[str, str] = field(default_factory=dict)


ConfigStore.instance().store(group="hydra/sweeper", name="optuna", node=OptunaSweeperConf,
                             provider="llm_sweep")


class OptunaSweeper(Sweeper):
    """Optimizes the value the task function returns over a search space with Optuna."""

    def __init__(self, **settings: Any) -> None:
        from hydra_plugins.llm_sweep_optuna._impl import OptunaSweeperImpl

        self.sweeper = OptunaSweeperImpl(OptunaSweeperConf(**settings))

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.sweeper.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: List[str]) -> List[List["JobReturn"]]:
        return self.sweeper.sweep(arguments)
