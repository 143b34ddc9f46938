"""Report a trial's validation loss to the Optuna sweeper so its pruner can stop it early.

The sweeper (hydra_plugins/llm_sweep_optuna) gives each job its trial identity through
environment variables; `OptunaPruningReporter.from_env()` turns them back into the
trial, and the training loop passes the reporter as a sink. When the pruner gives up on
the trial, the reporter sets the run's StopRequest. The pruner settings travel in the
study itself (a study user attribute), so the job prunes exactly as the sweep was
configured.

Progress is reported in tokens seen (optimizer steps x tokens per step), not in steps:
trials with different batch sizes or budgets are compared at equal training tokens.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Optional

from llm_sweep.core.run_record import VAL_LOSS
from llm_sweep.training.sinks import RunInfo, Sink
from llm_sweep.training.stop import PRUNED, StopRequest

if TYPE_CHECKING:
    import optuna  # only inside an Optuna sweep

TRIAL_ENV = "LLM_SWEEP_OPTUNA_TRIAL"
STORAGE_ENV = "LLM_SWEEP_OPTUNA_STORAGE"
STUDY_ENV = "LLM_SWEEP_OPTUNA_STUDY"
PRUNER_ATTR = "llm_sweep.pruner"  # study user attribute: {"name": ..., "min_resource": ...}
PRUNERS = ("none", "median", "sha", "hyperband")


def build_pruner(name: Optional[str] = None, min_resource: Optional[int] = None) -> "optuna.pruners.BasePruner":
    """The pruner called `name` (none | median | sha | hyperband). `min_resource` is in
    tokens, the unit jobs report progress in: no trial is compared before it has trained on
    that many (median: its warm-up; sha, successive halving as in ASHA: its first rung, None
    lets Optuna estimate it from the first finished trial; hyperband: its smallest bracket)."""
    import optuna  # only inside an Optuna sweep

    if name is None or name == "none":
        return optuna.pruners.NopPruner()
    if name == "median":
        return optuna.pruners.MedianPruner(n_warmup_steps=min_resource or 0)
    if name == "sha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=min_resource or "auto")
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=min_resource or 1)
    raise ValueError(f"pruner={name!r} is not one of {', '.join(PRUNERS)}")


class OptunaPruningReporter(Sink):
    """A sink that reports `val/loss` to a running Optuna trial, and asks the training loop
    to stop when the study's pruner decides the trial is not worth finishing."""

    metric = VAL_LOSS

    def __init__(self, trial: "optuna.Trial", stop: StopRequest) -> None:
        self.trial = trial
        self.stop = stop
        self.tokens_per_step = 1  # until start(): progress counts steps

    def start(self, info: RunInfo) -> None:
        self.tokens_per_step = info.tokens_per_step

    @classmethod
    def from_env(cls, stop: StopRequest,
                 environ: Optional[Mapping[str, str]] = None) -> Optional[OptunaPruningReporter]:
        """The reporter for the trial this process runs, or None outside an Optuna sweep.
        The environment is read when called (Hydra sets the trial's in `hydra.job.env_set`
        after this module may have been imported)."""
        environ = os.environ if environ is None else environ
        number = environ.get(TRIAL_ENV)
        if number is None:
            return None
        missing = [key for key in (STORAGE_ENV, STUDY_ENV) if not environ.get(key)]
        if missing:
            raise RuntimeError(f"{TRIAL_ENV} is set but {', '.join(missing)} is not")
        # Imported here: runs outside an Optuna sweep never pay for importing optuna.
        import optuna  # only inside an Optuna sweep

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
        tokens = step * self.tokens_per_step
        self.trial.report(value, tokens)
        if self.trial.should_prune():
            self.stop.request(PRUNED, f"pruned at step {step} ({tokens:,} tokens) with "
                                      f"{self.metric}={value:.4g}")
