"""A study simulated many times through the project's own fit: how tightly would it pin
the compute-optimal exponents and tokens/param before any compute is spent?

Each repeat draws every run's final loss from the true law plus Gaussian noise of the
given standard deviation (independently per run and seed: the seed-to-seed noise, or a
study's realised scatter for a calibration), fits it as `report --fit` would (both
approaches, point estimates), and keeps the estimates. The spread of the estimates over
the repeats is what a study of that design would report as its 95% interval.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from llm_sweep.scaling.design import Design
from llm_sweep.scaling.law import Law
from llm_sweep.scaling.fit import RunPoint

# What each repeat estimates, and how close to the truth counts as pinned: an absolute
# width for exponents, a factor for tokens/param.
QUANTITIES = ("a", "b", "tokens_per_param")
TOLERANCE = {"a": 0.05, "b": 0.05, "tokens_per_param": 1.25}

PointFit = Callable[[Sequence[RunPoint], float], dict[str, float]]


@dataclass(frozen=True)
class Spread:
    """One estimate over the repeats of one approach."""

    name: str
    approach: int
    truth: float
    median: float
    low: float  # 2.5th percentile
    high: float  # 97.5th percentile
    pinned: float  # share of repeats within TOLERANCE of the truth
    failed: int  # repeats whose fit gave no estimate

    @property
    def width(self) -> float:
        """Full width of the 95% range: absolute for exponents, hi/lo for tokens/param."""
        return self.high / self.low if self.name == "tokens_per_param" else self.high - self.low


@dataclass(frozen=True)
class Simulation:
    design: Design
    noise: float
    repeats: int
    spreads: tuple[Spread, ...]


def draw_points(law: Law, design: Design, noise: float, rng: np.random.Generator) -> list[RunPoint]:
    points = []
    for run in design.runs:
        tokens = law.tokens(run.compute, run.params)
        mean = law.loss(run.params, tokens)
        for loss in mean + noise * rng.standard_normal(run.seeds):
            points.append(RunPoint(run.params, run.params, tokens, run.compute, float(loss), run.compute,
                                   (run.compute, run.params)))
    return points


def simulate(law: Law, design: Design, noise: float, repeats: int, fit: PointFit,
             seed: int = 0) -> Simulation:
    rng = np.random.default_rng(seed)
    top = max(design.budgets)
    estimates = [fit(draw_points(law, design, noise, rng), top) for _ in range(repeats)]
    truth = {"a": law.a, "b": law.b, "tokens_per_param": law.tokens_per_param(top)}
    spreads = tuple(_spread(name, approach, truth[name],
                            np.array([e.get(f"{name}{approach}", np.nan) for e in estimates]))
                    for approach in (2, 3) for name in QUANTITIES)
    return Simulation(design, noise, repeats, spreads)


def _spread(name: str, approach: int, truth: float, values: np.ndarray) -> Spread:
    ok = values[np.isfinite(values)]
    failed = len(values) - len(ok)
    if not len(ok):
        return Spread(name, approach, truth, np.nan, np.nan, np.nan, 0.0, failed)
    if name == "tokens_per_param":
        ratio = np.maximum(ok / truth, truth / np.where(ok > 0, ok, np.nan))
        pinned = float(np.mean(ratio <= TOLERANCE[name]))
    else:
        pinned = float(np.mean(np.abs(ok - truth) <= TOLERANCE[name]))
    low, median, high = np.percentile(ok, [2.5, 50, 97.5])
    return Spread(name, approach, truth, float(median), float(low), float(high),
                  pinned * len(ok) / len(values), failed)
