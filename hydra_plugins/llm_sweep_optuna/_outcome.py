"""What a finished Hydra job means for its Optuna trial: COMPLETE, PRUNED or FAIL."""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import optuna
from hydra.core.utils import JobReturn, JobStatus
from optuna.trial import TrialState

log = logging.getLogger(__name__)

STATUS_FILE = "status.json"  # written by the training job: {"status": ..., "error": ...}


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
    status = read_status(ret)
    if status.get("status") == "pruned":
        return TrialOutcome(TrialState.PRUNED)
    reason = f"the job returned {ret.return_value!r}, not a finite number"
    if status:
        reason = status.get("error") or f"{reason} (status {status.get('status')!r})"
    return TrialOutcome(TrialState.FAIL, error=reason)


def read_status(ret: JobReturn) -> dict[str, Any]:
    """The job's `status.json` from its output directory; empty when it wrote none."""
    if ret.hydra_cfg is None:
        return {}
    path = Path(ret.hydra_cfg.hydra.runtime.output_dir) / STATUS_FILE
    try:
        status = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        log.warning("Ignoring unreadable %s: %s", path, error)
        return {}
    return status if isinstance(status, dict) else {}


def _finite_float(value: Any) -> Optional[float]:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
