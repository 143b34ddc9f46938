"""The compute budget: what a run has spent, and how far along its binding budget it is."""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Optional

from llm_sweep.config import BudgetConfig


@dataclass
class Spent:
    """Counters a run carries through checkpoints."""

    step: int = 0
    tokens: int = 0
    train_s: float = 0.0  # wall time of training steps, compile warm-up excluded
    compile_s: float = 0.0  # wall time of the first (compiling) step after each start
    compile_steps: int = 0
    eval_s: float = 0.0  # wall time of evaluations

    def to_dict(self) -> dict:
        return asdict(self)

    def add_step(self, tokens: int, seconds: float, compiling: bool) -> None:
        """Count one optimizer step; the time of a step that compiled goes to compile_s."""
        self.step += 1
        self.tokens += tokens
        if compiling:
            self.compile_s += seconds
            self.compile_steps += 1
        else:
            self.train_s += seconds


class Budget:
    """Progress in [0, 1] is the largest fraction spent of any budget that is set.

    A FLOP budget counts tokens x `flops_per_token` (models.size.flops_per_token, the
    count MFU uses), so it binds at a fixed token count and the schedule ends exactly there.
    """

    def __init__(self, cfg: BudgetConfig, flops_per_token: Optional[int] = None):
        if cfg.flops is not None and not flops_per_token:
            raise ValueError("budget.flops needs the model's flops_per_token")
        self.cfg = cfg
        self.time_s = cfg.time_s
        self.flops_per_token = flops_per_token

    def elapsed_s(self, spent: Spent) -> float:
        """Seconds counted against `budget.time` (compile and eval only when asked)."""
        return (spent.train_s + spent.compile_s * self.cfg.count_compile
                + spent.eval_s * self.cfg.count_eval)

    def fractions(self, spent: Spent) -> dict[str, float]:
        fractions = {}
        if self.time_s is not None:
            fractions["time"] = self.elapsed_s(spent) / self.time_s
        if self.cfg.steps is not None:
            fractions["steps"] = spent.step / self.cfg.steps
        if self.cfg.tokens is not None:
            fractions["tokens"] = spent.tokens / self.cfg.tokens
        if self.cfg.flops is not None:
            fractions["flops"] = spent.tokens * self.flops_per_token / self.cfg.flops
        return fractions

    def progress(self, spent: Spent) -> float:
        return min(1.0, max(self.fractions(spent).values()))

    def progress_after_step(self, spent: Spent, tokens_per_step: int, step_s: float) -> float:
        """Progress at the end of the coming step, so step 0 never trains at warmup's lr 0 and the
        last step lands on the schedule's end. `step_s` estimates the step's duration."""
        return self.progress(replace(spent, step=spent.step + 1, tokens=spent.tokens + tokens_per_step,
                                     train_s=spent.train_s + step_s))

    def binding(self, spent: Spent) -> str:
        """The budget that is furthest along (the one that will end the run)."""
        fractions = self.fractions(spent)
        return max(fractions, key=fractions.get)

    def done(self, spent: Spent) -> bool:
        return self.progress(spent) >= 1.0
