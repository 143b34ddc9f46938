"""The end of a sweep: best trial in `optimization_results.yaml`, history and importance plots."""
from __future__ import annotations

import logging
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Optional

import optuna
from omegaconf import OmegaConf
from optuna.trial import TrialState

from llm_sweep.core.run_record import OPTUNA_RESULTS_FILE

log = logging.getLogger(__name__)

HISTORY_PLOT = "optimization_history.png"
IMPORTANCE_PLOT = "param_importances.png"


def summarize(study: optuna.Study) -> dict[str, Any]:
    """Name, best params and value, and trial counts by state (best_* are None without a COMPLETE trial)."""
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = study.best_trial if complete else None
    return {
        "name": study.study_name,
        "best_trial": best.number if best else None,
        "best_params": best.params if best else None,
        "best_value": best.value if best else None,
        "n_trials": len(trials),
        "states": dict(Counter(t.state.name for t in trials)),
    }


def write_results(study: optuna.Study, sweep_dir: Path) -> dict[str, Any]:
    """Log the best trial and write the summary and plots into `sweep_dir`."""
    summary = summarize(study)
    if summary["best_trial"] is None:
        log.warning("No trial of study '%s' completed: %s", study.study_name, summary["states"])
    else:
        log.info("Best trial %d: value %s, params %s", summary["best_trial"], summary["best_value"],
                 summary["best_params"])
    sweep_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(OmegaConf.create(summary), sweep_dir / OPTUNA_RESULTS_FILE)
    save_plots(study, sweep_dir)
    return summary


def write_overlay(study: optuna.Study, path: Path, fixed: dict[str, Any]) -> Optional[Path]:
    """The best trial's params, with the sweep's values of the `fixed` keys, as a Hydra
    config of the global package at `path` (a run applies it as `+group=name` from a config
    folder, or with --config-dir); None without a completed trial."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        log.warning("No overlay written to %s: no trial of study '%s' completed", path, study.study_name)
        return None
    best = study.best_trial
    overlay = OmegaConf.create()
    for key, value in {**fixed, **best.params}.items():
        OmegaConf.update(overlay, key, value, force_add=True)
    seeds = best.user_attrs.get("seeds")
    over = f"the mean over seeds {seeds}" if seeds else "one run"
    header = (f"# @package _global_\n# Tuned by the Optuna study '{study.study_name}': trial {best.number} of "
              f"{len(study.trials)}, value {best.value:.6g} ({over}).\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + OmegaConf.to_yaml(overlay))
    log.info("Best params written as a config to %s", path)
    return path


def save_plots(study: optuna.Study, sweep_dir: Path) -> None:
    from optuna.visualization import matplotlib as plots  # matplotlib: only when plotting

    with warnings.catch_warnings():
        # Optuna marks its matplotlib backend experimental.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            log.info("Skipping plots: no completed trial")
            return
        _save(plots.plot_optimization_history(study), sweep_dir / HISTORY_PLOT)
        reason = _importance_skip_reason(study)
        if reason:
            log.info("Skipping the parameter-importance plot: %s", reason)
            return
        # PED-ANOVA needs only numpy (fANOVA, the default before Optuna 5, needs scikit-learn).
        evaluator = optuna.importance.PedAnovaImportanceEvaluator()
        try:
            axes = plots.plot_param_importances(study, evaluator=evaluator)
        except (ImportError, ValueError, RuntimeError) as error:
            log.info("Skipping the parameter-importance plot: %s", error)
            return
        _save(axes, sweep_dir / IMPORTANCE_PLOT)


def _importance_skip_reason(study: optuna.Study) -> Optional[str]:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 2:
        return f"{len(complete)} completed trial(s), at least 2 needed"
    values_by_param: dict[str, set[str]] = {}
    for trial in complete:
        for name, value in trial.params.items():
            values_by_param.setdefault(name, set()).add(repr(value))
    if not any(len(values) > 1 for values in values_by_param.values()):
        return "no parameter took more than one value"
    return None


def _save(axes: Any, path: Path) -> None:
    import matplotlib.pyplot as plt  # only when plotting

    figure = axes.figure
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)
