"""Throughput and utilization: one definition of tokens/s and MFU, and the window of
steps between two logs that the training loop reports.

MFU (model FLOPs utilization) is the FLOP/s the model's training math needs at the
measured throughput, as a fraction of the device's peak. Training, the bench and the
planner all use these functions.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

from llm_sweep.core.run_record import MFU, STEP_MS, TOKENS_PER_S, TRAIN_LOSS


def tokens_per_s(tokens: float, seconds: float) -> float:
    if seconds <= 0:
        raise ValueError(f"tokens_per_s: {seconds} s is not a positive duration")
    return tokens / seconds


def mfu(tokens_per_s: float, flops_per_token: float, peak_flops: Optional[float]) -> Optional[float]:
    """The fraction of `peak_flops` that training at `tokens_per_s` uses; None when the
    peak is unknown (never a guessed number)."""
    if not peak_flops:
        return None
    return tokens_per_s * flops_per_token / peak_flops


def tokens_per_s_at_mfu(mfu: float, flops_per_token: float, peak_flops: float) -> float:
    """The throughput that a given MFU means for a model (the inverse of `mfu`)."""
    return mfu * peak_flops / flops_per_token


class MetricsWindow:
    """Train metrics over the optimizer steps since the last flush.

    The loss is summed on the device (no host sync per step). Steps that compile are
    left out of the timing, their tokens too, so tokens/s and MFU describe steady steps.
    `tokens_per_step` and `peak_flops` are the whole run's (all processes): tokens/s is the
    global batch over the step time, MFU against every device's peak.
    """

    def __init__(self, tokens_per_step: int, flops_per_token: int, peak_flops: Optional[float],
                 mean: Callable[[Any], Any] = lambda loss: loss):
        self.tokens_per_step = tokens_per_step
        self.flops_per_token = flops_per_token
        self.peak_flops = peak_flops
        self.mean = mean  # of a loss over the processes of a data-parallel run
        self.last_loss: Any = None  # the newest step's loss, a device tensor
        self._reset()

    def _reset(self) -> None:
        self.loss_sum: Any = None
        self.steps = 0
        self.timed_steps = 0
        self.seconds = 0.0

    def add(self, loss: Any, seconds: float, timed: bool = True) -> None:
        """One optimizer step: its mean loss (a device tensor) and wall time."""
        self.loss_sum = loss if self.loss_sum is None else self.loss_sum + loss
        self.last_loss = loss
        self.steps += 1
        if timed:
            self.timed_steps += 1
            self.seconds += seconds

    def flush(self) -> dict[str, Optional[float]]:
        """The window's metrics (one host sync), then an empty window."""
        metrics: dict[str, Optional[float]] = {}
        if self.steps:
            metrics[TRAIN_LOSS] = float(self.mean(self.loss_sum)) / self.steps
        if self.timed_steps and self.seconds > 0:
            rate = tokens_per_s(self.timed_steps * self.tokens_per_step, self.seconds)
            metrics[TOKENS_PER_S] = rate
            metrics[MFU] = mfu(rate, self.flops_per_token, self.peak_flops)
            metrics[STEP_MS] = 1000 * self.seconds / self.timed_steps
        self._reset()
        return metrics
