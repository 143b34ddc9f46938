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

    def after_step(self, step: int, model: nn.Module, inputs: Tensor,
                   autocast: Autocast) -> dict[str, Tensor | float]:
        """Runs after optimizer step `step` (0-based); returns metrics to log."""
        return {}
