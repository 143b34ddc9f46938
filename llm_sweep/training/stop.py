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
    """Set once, by the first reason that arrives; safe to set from a signal handler.

    Over several processes the reason is the one they agreed on (`adopt`): a request that
    reaches one process while the agreement is under way is held back (`pending`) and sent
    at the next agreement, so every process stops, for the same reason, at the same step.
    """

    def __init__(self) -> None:
        self.reason: Optional[str] = None
        self.detail = ""
        self.pending: Optional[tuple[str, str]] = None  # (reason, detail) not yet agreed on

    def request(self, reason: str, detail: str = "") -> None:
        if reason not in REASONS:
            raise ValueError(f"stop reason {reason!r} is not one of {', '.join(REASONS)}")
        if self.reason is None and self.pending is None:
            self.reason, self.detail = reason, detail

    @property
    def requested(self) -> bool:
        return self.reason is not None

    @property
    def code(self) -> int:
        """0 for no stop, else 1 + the reason's precedence: what this process sends when the
        processes agree (a held-back request included)."""
        return max(code_of(self.reason), code_of(self.pending[0] if self.pending else None))

    def adopt(self, agreed: int, sent: int) -> None:
        """Take the reason the processes agreed on (the highest code they sent; this one
        sent `sent`). A request that arrived here during the agreement, above what was
        agreed, no other process knows of yet: it is held back for the next agreement."""
        if self.code > max(agreed, sent):
            self.pending = (self.reason, self.detail)
        elif self.pending is not None and code_of(self.pending[0]) <= agreed:
            self.reason, self.detail = self.pending  # sent last time; the detail is its own
            self.pending = None
        if agreed == code_of(self.reason):
            return
        self.reason = REASONS[agreed - 1] if agreed else None
        self.detail = "on another process" if agreed else ""

    def raise_if_interrupted(self, step: int) -> None:
        """Turn a stop that is not the budget's into the exception the job reports."""
        if self.reason == PREEMPTED:
            raise RunInterrupted(f"stopped at step {step} on request ({self.detail or 'signal'}); "
                                 "checkpoint saved")
        if self.reason == PRUNED:
            raise RunPruned(self.detail or f"pruned at step {step}")


def code_of(reason: Optional[str]) -> int:
    return 0 if reason is None else 1 + REASONS.index(reason)
