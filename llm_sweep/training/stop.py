"""A request to stop training at the next step boundary, and why.

The training loop owns no global state: whoever may end a run early holds the same
StopRequest. The budget sets it when it binds, the preemption guard on a Slurm signal,
the Optuna pruning reporter when the pruner gives up on a trial. The loop checks it once
per optimizer step and ends the run the way the reason asks for.
"""
from __future__ import annotations

from typing import Optional

BUDGET = "budget"  # the binding budget is spent: final evaluation and summary
PREEMPTED = "preempted"  # a preemption or pre-timeout signal: checkpoint, then RunInterrupted
PRUNED = "pruned"  # the sweep's pruner stopped the trial: RunPruned, nothing saved
# By precedence, lowest first: when processes agree on a stop, the highest reason any of
# them has wins (a preempted run must save its checkpoint, whatever else is due).
REASONS = (BUDGET, PRUNED, PREEMPTED)


class RunInterrupted(Exception):
    """Training stopped on request (a preemption signal) after saving a checkpoint."""


class RunPruned(Exception):
    """The sweep's pruner stopped this trial early."""


class StopRequest:
    """Set once, by the first reason that arrives; safe to set from a signal handler."""

    def __init__(self) -> None:
        self.reason: Optional[str] = None
        self.detail = ""

    def request(self, reason: str, detail: str = "") -> None:
        if reason not in REASONS:
            raise ValueError(f"stop reason {reason!r} is not one of {', '.join(REASONS)}")
        if self.reason is None:
            self.reason, self.detail = reason, detail

    @property
    def requested(self) -> bool:
        return self.reason is not None

    @property
    def code(self) -> int:
        """0 for no stop, else 1 + the reason's precedence (what processes agree on)."""
        return 0 if self.reason is None else 1 + REASONS.index(self.reason)

    def adopt(self, code: int) -> None:
        """Take the reason the processes agreed on (the highest code among them)."""
        if code > self.code:
            self.reason = REASONS[int(code) - 1]
            self.detail = self.detail or "on another process"

    def raise_if_interrupted(self, step: int) -> None:
        """Turn a stop that is not the budget's into the exception the job reports."""
        if self.reason == PREEMPTED:
            raise RunInterrupted(f"stopped at step {step} on request ({self.detail or 'signal'}); "
                                 "checkpoint saved")
        if self.reason == PRUNED:
            raise RunPruned(self.detail or f"pruned at step {step}")
