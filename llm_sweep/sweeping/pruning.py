"""Report a trial's validation loss to the Optuna sweeper so its pruner can stop it early.

The sweeper (hydra_plugins/llm_sweep_optuna) gives each job its trial identity through
environment variables; `OptunaPruningReporter.from_env()` turns them back into the
trial, and the training loop passes the reporter as a sink. When the pruner gives up on
the trial, the reporter sets the run's StopRequest. The pruner settings travel in the
study itself (a study user attribute), so the job prunes exactly as the sweep was
configured.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Optional

from llm_sweep.run_record import VAL_LOSS
from llm_sweep.training.sinks import Sink
from llm_sweep.training.stop import PRUNED, StopRequest

if TYPE_CHECKING:
    import optuna

TRIAL_ENV = "LLM_SWEEP_OPTUNA_TRIAL"
STORAGE_ENV = "LLM_SWEEP_OPTUNA_STORAGE"
STUDY_ENV = "LLM_SWEEP_OPTUNA_STUDY"
PRUNER_ATTR = "llm_sweep.pruner"  # study user attribute: {"name": ..., "warmup_steps": ...}
PRUNERS = ("none", "median", "hyperband")


def build_pruner(name: Optional[str] = None, warmup_steps: int = 0) -> "optuna.pruners.BasePruner":
    """The pruner called `name` (none | median | hyperband); warmup applies to median."""
    import optuna

    if name is None or name == "none":
        return optuna.pruners.NopPruner()
    if name == "median":
        return optuna.pruners.MedianPruner(n_warmup_steps=warmup_steps)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner()
    raise ValueError(f"pruner={name!r} is not one of {', '.join(PRUNERS)}")


class OptunaPruningReporter(Sink):
    """A sink that reports `val/loss` to a running Optuna trial, and asks the training loop
    to stop when the study's pruner decides the trial is not worth finishing."""

    metric = VAL_LOSS

    def __init__(self, trial: "optuna.Trial", stop: StopRequest) -> None:
        self.trial = trial
        self.stop = stop

    @classmethod
    def from_env(cls, stop: StopRequest,
                 environ: Mapping[str, str] = os.environ) -> Optional[OptunaPruningReporter]:
        """The reporter for the trial this process runs, or None outside an Optuna sweep."""
        number = environ.get(TRIAL_ENV)
        if number is None:
            return None
        missing = [key for key in (STORAGE_ENV, STUDY_ENV) if not environ.get(key)]
        if missing:
            raise RuntimeError(f"{TRIAL_ENV} is set but {', '.join(missing)} is not")
        # Imported here: runs outside an Optuna sweep never pay for importing optuna.
        import optuna

        storage = optuna.storages.get_storage(environ[STORAGE_ENV])
        study_name = environ[STUDY_ENV]
        study_id = storage.get_study_id_from_name(study_name)
        settings: dict[str, Any] = storage.get_study_user_attrs(study_id).get(PRUNER_ATTR, {})
        study = optuna.load_study(study_name=study_name, storage=storage, pruner=build_pruner(**settings))
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, int(number))
        return cls(optuna.Trial(study, trial_id), stop)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        if self.metric not in metrics:
            return
        value = float(metrics[self.metric])
        self.trial.report(value, step)
        if self.trial.should_prune():
            self.stop.request(PRUNED, f"pruned at step {step} with {self.metric}={value:.4g}")
