"""What a finished Hydra job means for its Optuna trial: COMPLETE, PRUNED or FAIL."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import optuna
from hydra.core.utils import JobReturn, JobStatus
from optuna.trial import TrialState

from llm_sweep.core.run_record import STATUS_PRUNED, read_status


@dataclass(frozen=True)
class TrialOutcome:
    state: TrialState
    value: Optional[float] = None
    error: Optional[str] = None


def trial_outcome(ret: JobReturn) -> TrialOutcome:
    """A finite number returned is COMPLETE; a pruned job is PRUNED; anything else FAILs."""
    if ret.status == JobStatus.FAILED:
        # The exception itself: reading `ret.return_value` would re-raise it.
        error = ret._return_value
        if isinstance(error, optuna.TrialPruned):
            return TrialOutcome(TrialState.PRUNED)
        return TrialOutcome(TrialState.FAIL, error=f"{type(error).__name__}: {error}")
    value = _finite_float(ret.return_value)
    if value is not None:
        return TrialOutcome(TrialState.COMPLETE, value)
    status = job_status(ret)
    if status.get("status") == STATUS_PRUNED:
        return TrialOutcome(TrialState.PRUNED)
    reason = f"the job returned {ret.return_value!r}, not a finite number"
    if status:
        reason = status.get("error") or f"{reason} (status {status.get('status')!r})"
    return TrialOutcome(TrialState.FAIL, error=reason)


def job_status(ret: JobReturn) -> dict[str, Any]:
    """The job's status record from its output directory; empty when it wrote none."""
    if ret.hydra_cfg is None:
        return {}
    return read_status(Path(ret.hydra_cfg.hydra.runtime.output_dir)) or {}


def _finite_float(value: Any) -> Optional[float]:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
