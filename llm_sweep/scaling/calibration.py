"""Do the printed intervals mean what they say? Simulate from a known truth and count.

Fits. Studies are drawn from a known law on a given design (every run's loss is the law's
plus Gaussian noise, per seed), each is fitted by the report's own code (fit.fit_one: the
fixed-design bootstrap, the widened percentile intervals, the constraint rule), and for
each printed value we count how often its 95% interval holds the truth, how wide the
interval is against the realised spread of the estimates over the studies (their 2.5th to
97.5th percentiles: what an honest interval's width should match), and how often the
report calls it constrained.

Verdicts. Two sides of n seeds each are drawn from normal noise with a known gap; the
comparison's interval is checked for coverage of the gap, for excluding 0 under no gap
(the false alarms it would print), and against its own p-value (they must agree: the
interval excludes 0 exactly when p < 0.05). One side's mean interval (the shape residual's)
is checked for coverage of its mean.
"""
from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from llm_sweep.scaling.design import Design
from llm_sweep.scaling.estimates import LARGEST_BUDGET, Estimate, at_largest_budget
from llm_sweep.scaling.fit import fit_one
from llm_sweep.scaling.fit_record import ScalingFit
from llm_sweep.scaling.law import Law
from llm_sweep.scaling.lbfgs import BLAS
from llm_sweep.scaling.points import check_enough, collect
from llm_sweep.scaling.simulate import draw_points
from llm_sweep.scaling.verdicts import compare, mean_interval

# (what, approach): the values a study is asked for; tokens/param at the largest budget.
QUANTITIES = (("alpha", 3), ("beta", 3), ("a", 3), ("tokens_per_param", 3), ("a", 2), ("tokens_per_param", 2))
RATIOS = frozenset({"tokens_per_param"})


@dataclass(frozen=True)
class Printed:
    """One value as a fit prints it."""

    value: Optional[float]
    ci: tuple[Optional[float], Optional[float]]
    constrained: bool


@dataclass(frozen=True)
class Coverage:
    """One printed value over the simulated studies."""

    name: str
    approach: int
    truth: float
    studies: int
    coverage: float  # share of studies whose interval holds the truth (no interval: a miss)
    median_width: float  # of the intervals: absolute, or high / low for a ratio
    realised_width: float  # of the estimates: 2.5th to 97.5th percentile, the same way
    constrained: float  # share the report calls constrained
    median_bias: float  # median estimate minus truth (a ratio: median / truth - 1)

    @property
    def width_ratio(self) -> float:
        """Printed over realised width (on a log scale for ratios): 1 is honest."""
        if self.name in RATIOS:
            return float(np.log(self.median_width) / np.log(self.realised_width))
        return self.median_width / self.realised_width


def printed(fit: ScalingFit) -> dict[tuple[str, int], Printed]:
    """The values of QUANTITIES as one fit prints them."""
    law, two = fit.law, fit.approach2
    found = {(name, 3): Printed(getattr(law, name).value, getattr(law, name).ci, getattr(law, name).constrained)
             for name in ("alpha", "beta", "a")}
    found[("a", 2)] = Printed(two.a.value, two.a.ci, two.a.constrained)
    for approach, optima in ((3, law.at_compute), (2, two.at_compute)):
        at = at_largest_budget(optima)
        ratio = at.tokens_per_param if at else Estimate(None, (None, None))
        found[("tokens_per_param", approach)] = Printed(ratio.value, ratio.ci, bool(at and at.constrained))
    return found


def fit_study(law: Law, design: Design, noise: float, resamples: int, seed: int) -> dict[tuple[str, int], Printed]:
    """One simulated study, fitted as `report --fit` fits it (variable projection's law,
    N = all parameters)."""
    data = collect(draw_points(law, design, noise, np.random.default_rng(seed)))
    check_enough(data)
    with BLAS.limit(limits=1, user_api="blas"):
        fit = fit_one(data, data.params, {LARGEST_BUDGET: max(design.budgets)}, resamples, seed, with_lbfgs=False)
    return printed(fit)


def _truths(law: Law, design: Design) -> dict[tuple[str, int], float]:
    top = max(design.budgets)
    return {(name, approach): (law.tokens_per_param(top) if name in RATIOS else getattr(law, name))
            for name, approach in QUANTITIES}


def _width(name: str, low: float, high: float) -> float:
    return high / low if name in RATIOS else high - low


def summarise(name: str, approach: int, truth: float, found: Sequence[Printed]) -> Coverage:
    values = np.array([p.value if p.value is not None else np.nan for p in found], dtype=float)
    lows = np.array([p.ci[0] if p.ci[0] is not None else np.nan for p in found], dtype=float)
    highs = np.array([p.ci[1] if p.ci[1] is not None else np.nan for p in found], dtype=float)
    with np.errstate(invalid="ignore"):
        covered = (lows <= truth) & (truth <= highs)
        widths = np.array([_width(name, lo, hi) for lo, hi in zip(lows, highs)])
    ok = values[np.isfinite(values)]
    realised = _width(name, *np.percentile(ok, [2.5, 97.5])) if len(ok) else np.nan
    bias = ((np.median(ok) / truth - 1) if name in RATIOS else (np.median(ok) - truth)) if len(ok) else np.nan
    return Coverage(name, approach, truth, len(found), float(covered.mean()),
                    float(np.nanmedian(widths)) if np.isfinite(widths).any() else np.nan, float(realised),
                    float(np.mean([p.constrained for p in found])), float(bias))


def calibrate_fit(law: Law, design: Design, noise: float, studies: int, resamples: int = 100, seed: int = 0,
                  processes: int = 1) -> list[Coverage]:
    """Coverage of every QUANTITY over `studies` simulated studies (study i drawn and
    bootstrapped with seed + i: the same numbers on every machine and process count)."""
    args = [(law, design, noise, resamples, seed + i) for i in range(studies)]
    if processes > 1:
        with ProcessPoolExecutor(processes) as pool:
            results = list(pool.map(fit_study, *zip(*args)))
    else:
        results = [fit_study(*a) for a in args]
    truths = _truths(law, design)
    return [summarise(name, approach, truths[(name, approach)], [r[(name, approach)] for r in results])
            for name, approach in QUANTITIES]


@dataclass(frozen=True)
class VerdictCoverage:
    """Comparisons of n seeds a side, over many simulated pairs."""

    seeds: int
    pairs: int
    null_excludes_zero: float  # no true gap, yet the interval excludes 0
    disagree_with_p: int  # pairs where "excludes 0" and "p < 0.05" differ
    gap_coverage: float  # a true gap of one sd: the interval holds it
    mean_coverage: float  # one side's mean interval holds its mean


def calibrate_verdicts(seeds: int, pairs: int, seed: int = 0) -> VerdictCoverage:
    rng = np.random.default_rng(seed)
    gap, excludes, disagree, covers, mean_covers = 1.0, 0, 0, 0, 0
    for i in range(pairs):
        a, b = rng.standard_normal(seeds), rng.standard_normal(seeds)
        null = compare("final/val_loss", "a", a, "b", b)
        low, high = null.diff_ci
        excludes += not low <= 0 <= high
        disagree += (not low <= 0 <= high) != (null.p_value < 0.05)
        shifted = compare("final/val_loss", "a", a + gap, "b", b)
        covers += shifted.diff_ci[0] <= gap <= shifted.diff_ci[1]
        low, high = mean_interval(a)
        mean_covers += low <= 0 <= high
    return VerdictCoverage(seeds, pairs, excludes / pairs, disagree, covers / pairs, mean_covers / pairs)
