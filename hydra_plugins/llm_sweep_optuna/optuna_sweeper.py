"""Front of the Optuna sweeper: a Sweeper that loads the real one lazily.

Hydra imports every module of `hydra_plugins` at start-up, so this one stays light;
optuna and the implementation (`_impl`) load only when the sweeper is selected.
No `from __future__ import annotations` here (see config.py).
"""
from typing import TYPE_CHECKING, Any, List, Mapping, Sequence

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from hydra_plugins.llm_sweep_optuna.config import OptunaSweeperConf, register
from llm_sweep.core.console import exit_with_error
from llm_sweep.core.errors import ConfigError
from llm_sweep.core.rules import check

if TYPE_CHECKING:
    from hydra.core.utils import JobReturn

    from hydra_plugins.llm_sweep_optuna._preview import StudyPreview

register()


class OptunaSweeper(Sweeper):
    """Optimizes the value the task function returns over a search space with Optuna."""

    def __init__(self, **settings: Any) -> None:
        conf = OptunaSweeperConf(**settings)
        try:
            check(conf, "hydra.sweeper.")
        except ConfigError as error:
            # Hydra's instantiate would wrap an exception into a multi-line message;
            # SystemExit passes through it, so a bad setting reads as one line, exit code 2.
            exit_with_error(error)
        # discovering the plugin must not import optuna
        from hydra_plugins.llm_sweep_optuna._impl import OptunaSweeperImpl

        self.sweeper = OptunaSweeperImpl(conf)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.sweeper.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: List[str]) -> List[List["JobReturn"]]:
        return self.sweeper.sweep(arguments)

    @staticmethod
    def preview(settings: Mapping[str, Any], arguments: Sequence[str], job_name: str,
                launcher_target: str) -> "StudyPreview":
        """What this sweep would run, without running it (a sweep's dry run): the trials left,
        the search space, a few random points and its corners (see _preview.py)."""
        # discovering the plugin must not import optuna
        from hydra_plugins.llm_sweep_optuna._preview import preview_study

        return preview_study(settings, arguments, job_name, launcher_target)
