"""When the loop logs, evaluates and checkpoints: each schedule decides its own timing."""
from __future__ import annotations

from dataclasses import dataclass

from llm_sweep.core.config import CheckpointConfig, EvalConfig


@dataclass(frozen=True)
class Every:
    """Every `interval` optimizer steps; 0 never."""

    interval: int

    def due(self, step: int) -> bool:
        return self.interval > 0 and step % self.interval == 0


@dataclass(frozen=True)
class EvalSchedule:
    """Periodic evaluations on `eval.batches` micro-batches every `eval.interval` steps, and
    a final one on `eval.final_batches` (None: the whole validation split). The last step
    gets only the final evaluation."""

    config: EvalConfig

    def due(self, step: int, last: bool) -> bool:
        return not last and Every(self.config.interval).due(step)


@dataclass(frozen=True)
class CheckpointSchedule:
    """Periodic checkpoints every `checkpoint.interval` steps (0: only the final one)."""

    config: CheckpointConfig

    def due(self, step: int) -> bool:
        return Every(self.config.interval).due(step)
