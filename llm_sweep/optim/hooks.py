"""Per-optimizer work that runs around each optimizer step, outside the training loop."""
from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, Callable

from torch import Tensor, nn

Autocast = Callable[[], AbstractContextManager]


class OptimizerHook:
    """The no-op hook: plain optimizers need nothing beyond `optimizer.step()`."""

    def step_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `optimizer.step(**kwargs)`."""
        return {}

    def after_step(self, step: int, model: nn.Module, inputs: Tensor, autocast: Autocast,
                   first_row: int = 0, weight: float = 1.0) -> dict[str, Tensor | float]:
        """Runs after optimizer step `step` (0-based) with what the step called (`model`:
        compiled, DDP) and this process's last micro-batch `inputs`; over several processes
        `first_row` and `weight` place them in the step's last global micro-batch
        (BatchShare.last_micro_batch). Returns metrics to log."""
        return {}
