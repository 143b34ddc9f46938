"""Checkpoint on Slurm's pre-timeout / preemption signal, then let submitit requeue; and
Ctrl-C as the same graceful stop.

submitit binds USR2 to "call the task's checkpoint() and requeue". A Hydra task can only
be resubmitted as a whole, so the saving must happen inside the training loop: our
handler sets the run's StopRequest, the loop saves a checkpoint at the next step boundary
and raises RunInterrupted, and the job then hands the signal to submitit's handler,
which requeues the job into the same run directory, where `resume=auto` picks it up.

Ctrl-C (SIGINT) asks for the same stop: the step finishes, a checkpoint is written, and
the job prints the command that resumes the run. The handler is Python's own again at
once, so a second Ctrl-C raises KeyboardInterrupt where the program is.
"""
from __future__ import annotations

import signal
from contextlib import contextmanager
from types import FrameType
from typing import Callable, Iterator, Optional

from llm_sweep.training.stop import PREEMPTED, StopRequest

PREEMPTION_SIGNALS = (signal.SIGUSR2, signal.SIGTERM)
CTRL_C = signal.SIGINT


class PreemptionGuard:
    """Turns preemption signals into a checkpoint-and-stop request for the training loop."""

    def __init__(self, stop: StopRequest) -> None:
        self.stop = stop
        self.received: Optional[tuple[int, Optional[FrameType]]] = None
        self.ctrl_c = False  # Ctrl-C asked for the stop
        self.previous: dict[int, Callable | int | None] = {}

    def _on_signal(self, signum: int, frame: Optional[FrameType]) -> None:
        if self.ctrl_c:  # torchrun follows a Ctrl-C with SIGTERM: the stop stays the user's
            return
        self.received = (signum, frame)
        self.stop.request(PREEMPTED, signal.Signals(signum).name)

    def _on_ctrl_c(self, signum: int, frame: Optional[FrameType]) -> None:
        signal.signal(CTRL_C, self.previous[CTRL_C])  # a second Ctrl-C stops at once
        self.ctrl_c = True
        self.stop.request(PREEMPTED, "Ctrl-C")

    @property
    def by_ctrl_c(self) -> bool:
        """The stop came from Ctrl-C, with no preemption signal to hand on."""
        return self.ctrl_c and self.received is None

    def install(self) -> None:
        for sig in PREEMPTION_SIGNALS:
            self.previous[sig] = signal.getsignal(sig)
            signal.signal(sig, self._on_signal)
        if signal.getsignal(CTRL_C) is signal.default_int_handler:  # not where another owner set it
            self.previous[CTRL_C] = signal.default_int_handler
            signal.signal(CTRL_C, self._on_ctrl_c)

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)

    def hand_over(self) -> None:
        """After the checkpoint: pass the signal to whoever handled it before us (submitit
        requeues and exits); with no such handler the caller reports the run as killed."""
        if self.received is None:
            return
        signum, frame = self.received
        previous = self.previous.get(signum)
        self.restore()
        if callable(previous):
            previous(signum, frame)


@contextmanager
def preemption_guard(stop: StopRequest) -> Iterator[PreemptionGuard]:
    guard = PreemptionGuard(stop)
    guard.install()
    try:
        yield guard
    finally:
        guard.restore()
