"""A study's design: the model sizes run at each compute budget, each with its seeds."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from llm_sweep.scaling.law import Law


@dataclass(frozen=True)
class PlannedRun:
    compute: float
    params: float
    seeds: int


@dataclass(frozen=True)
class Design:
    """The runs of a study: a model size at a compute budget, each with its seeds."""

    runs: tuple[PlannedRun, ...]

    @classmethod
    def around_optimum(cls, law: Law, budgets: Sequence[float], shapes: int, spacing: float,
                       seeds: int) -> Design:
        """`shapes` sizes per budget, `spacing` apart (a factor in N), centred on the law's
        N_opt at that budget."""
        half = (shapes - 1) / 2
        return cls(tuple(PlannedRun(c, law.n_opt(c) * spacing ** (i - half), seeds)
                         for c in budgets for i in range(shapes)))

    @property
    def budgets(self) -> tuple[float, ...]:
        return tuple(sorted({run.compute for run in self.runs}))

    @property
    def jobs(self) -> int:
        return sum(run.seeds for run in self.runs)

    @property
    def compute(self) -> float:
        """FLOPs of the whole study: every run spends its budget, once per seed."""
        return sum(run.compute * run.seeds for run in self.runs)

    def span(self, compute: float) -> float:
        """The factor between the largest and smallest size run at `compute`."""
        sizes = [run.params for run in self.runs if run.compute == compute]
        return max(sizes) / min(sizes)

    def describe(self) -> str:
        per_budget = len(self.runs) / len(self.budgets)
        seeds = sorted({run.seeds for run in self.runs})
        budgets = ", ".join(f"{c:.3g}" for c in self.budgets)
        spans = ", ".join(f"{self.span(c):.3g}x" for c in self.budgets)
        count = f"{per_budget:g}" if per_budget == int(per_budget) else f"{per_budget:.1f} (mean)"
        seed_text = f"{seeds[0]}" if len(seeds) == 1 else f"{seeds[0]} to {seeds[-1]}"
        return (f"budgets {budgets} FLOPs; {count} sizes per budget spanning {spans} in N; "
                f"{seed_text} seed(s) per run: {self.jobs} runs, {self.compute:.3g} FLOPs")


def log_spacing(shapes: int, span: float) -> float:
    """The factor between neighbouring sizes that makes `shapes` sizes span `span` in N."""
    return math.exp(math.log(span) / (shapes - 1)) if shapes > 1 else 1.0
