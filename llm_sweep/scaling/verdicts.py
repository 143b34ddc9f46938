"""Is one side of a comparison better, or can its seeds not tell? A verdict over seeds.

Each side is the final values of one config over its seeds. The difference of the means
is judged by Welch's t-test, which does not assume the two sides vary alike, and its 95%
interval is that test's own: the difference plus or minus the Student-t quantile at the
Welch-Satterthwaite degrees of freedom times its standard error. So the interval excludes
0 exactly when p < 0.05, and it covers the true difference 95% of the time at any number
of seeds (a percentile bootstrap of 2-5 seeds covers 65-88%: it uses the plug-in variance
and normal tails). A side wins only at p < 0.01, the bar modded-nanogpt sets for a record
over repeated seeds. A side with one seed has no spread to test against: no verdict, and
no interval or p-value that would look like one.

An extra independent error can join the seeds' (a fitted law's prediction, for shape
residuals): its variance adds to the standard error and its degrees of freedom enter the
Welch-Satterthwaite sum, so the verdict carries that uncertainty too.

How many seeds a comparison needs (`seeds_for_power`): the smallest n a side for which
Welch's two-sided test at p < 0.01 finds a true gap with 80% probability (`power`).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np
from scipy import stats

from llm_sweep.core.run_record import FINAL_VAL_ACC, FINAL_VAL_LOSS, FINAL_VAL_PPL

P_THRESHOLD = 0.01
CONFIDENCE = 0.95
POWER = 0.8
MAX_SEEDS = 1000  # beyond this a gap is "not detectable by seeds"
SIMULATED_SEEDS, POWER_DRAWS, POWER_SEED = 40, 20_000, 0  # power(): Welch's test simulated up to 40 a side
NO_SPREAD = "no spread between seeds on either side: no verdict"
# Final val loss minus what a fitted L(N, D) predicts from the run's parameters and tokens
# (llm_sweep.report.shape_residuals): the shape's own effect, lower is better.
SHAPE_RESIDUAL = "residual/val_loss"
# Which way is better, per metric: a metric missing here is an error, never a guess.
HIGHER_IS_BETTER = {FINAL_VAL_LOSS: False, FINAL_VAL_PPL: False, FINAL_VAL_ACC: True,
                    SHAPE_RESIDUAL: False}


def one_seed(labels: Sequence[str]) -> str:
    """The verdict when a side has one seed, naming the side(s)."""
    return f"one seed on {' and '.join(labels)}: no verdict"


@dataclass(frozen=True)
class ExtraError:
    """An error independent of the seeds that the difference also carries: its variance
    and the degrees of freedom of that variance's estimate."""

    variance: float
    dof: float


@dataclass(frozen=True)
class Comparison:
    """Side a against side b on one metric; `diff` is mean_a - mean_b, `diff_ci` its 95%
    interval and `p_value` Welch's (both None with one seed on a side, or no spread);
    `dof` the test's degrees of freedom; `sd` the seeds' sd pooled over both sides."""

    metric: str
    a: str
    b: str
    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    diff: float
    diff_ci: Optional[tuple[float, float]]
    p_value: Optional[float]
    verdict: str
    dof: Optional[float] = None
    sd: Optional[float] = None
    law_sd: Optional[float] = None  # the extra error's sd, where one was carried

    @functools.cached_property
    def seeds_needed(self) -> Optional[int]:
        """The seeds a side that 80% power at p < 0.01 needs for a gap as large as `diff` at
        the seeds' sd (None: unknown, or more than MAX_SEEDS)."""
        return seeds_for_power(abs(self.diff), self.sd)

    @property
    def decided(self) -> bool:
        return self.p_value is not None and self.p_value < P_THRESHOLD and self.diff != 0

    def record(self) -> dict[str, Any]:
        """The comparison as one JSON object (null where a number does not exist)."""
        return {"metric": self.metric, "a": self.a, "b": self.b, "n_a": self.n_a, "n_b": self.n_b,
                "mean_a": self.mean_a, "mean_b": self.mean_b, "diff": self.diff,
                "diff_ci": None if self.diff_ci is None else list(self.diff_ci),
                "p_value": self.p_value, "verdict": self.verdict, "dof": self.dof, "sd": self.sd,
                "seeds_needed": self.seeds_needed, "law_sd": self.law_sd}


def compare(metric: str, a_label: str, a_values: Sequence[float], b_label: str,
            b_values: Sequence[float], extra: Optional[ExtraError] = None) -> Comparison:
    """The verdict on side a vs side b, one value per seed on each side."""
    if metric not in HIGHER_IS_BETTER:
        raise ValueError(f"{metric}: which way is better is not known "
                         f"(known: {', '.join(HIGHER_IS_BETTER)})")
    a, b = np.asarray(a_values, dtype=float), np.asarray(b_values, dtype=float)
    if not (a.size and b.size and np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError(f"{metric}: each side needs at least one finite value ({a_label}: "
                         f"{list(a_values)}, {b_label}: {list(b_values)})")
    mean_a, mean_b = float(a.mean()), float(b.mean())
    diff = mean_a - mean_b
    law_sd = None if extra is None else math.sqrt(extra.variance)
    base = (metric, a_label, b_label, a.size, b.size, mean_a, mean_b, diff)
    if min(a.size, b.size) < 2:
        single = [label for label, x in ((a_label, a), (b_label, b)) if x.size < 2]
        return Comparison(*base, None, None, one_seed(single), law_sd=law_sd)
    test = welch(a, b, extra)
    if test is None:
        return Comparison(*base, None, None, NO_SPREAD, law_sd=law_sd)
    interval, p_value, dof = test
    return Comparison(*base, interval, p_value, judge(metric, a_label, b_label, diff, interval, p_value),
                      dof, pooled_sd(a, b), law_sd)


def welch(a: np.ndarray, b: np.ndarray, extra: Optional[ExtraError] = None
          ) -> Optional[tuple[tuple[float, float], float, float]]:
    """Welch's test of mean(a) - mean(b) (with an extra independent error): its 95% interval,
    two-sided p-value and degrees of freedom; None when nothing varies (the test is
    undefined: a zero-width interval would claim certainty no seed gave)."""
    terms = [(a.var(ddof=1) / a.size, a.size - 1), (b.var(ddof=1) / b.size, b.size - 1)]
    if extra is not None:
        terms.append((extra.variance, extra.dof))
    variance = sum(v for v, _ in terms)
    if not variance > 0:
        return None
    dof = variance ** 2 / sum(v ** 2 / d for v, d in terms if v > 0)
    se, diff = math.sqrt(variance), float(a.mean() - b.mean())
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, dof)) * se
    p_value = float(2 * stats.t.sf(abs(diff) / se, dof))
    return (diff - half, diff + half), p_value, float(dof)


def mean_interval(values: Sequence[float]) -> Optional[tuple[float, float]]:
    """The 95% Student-t interval of one side's mean over its seeds; None with one seed or
    no spread."""
    x = np.asarray(values, dtype=float)
    if x.size < 2 or np.ptp(x) == 0:
        return None
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, x.size - 1)) * float(x.std(ddof=1)) / math.sqrt(x.size)
    return float(x.mean()) - half, float(x.mean()) + half


def pooled_sd(*sides: np.ndarray) -> Optional[float]:
    """The seeds' sd pooled over the sides with 2+ seeds; None without spread."""
    repeated = [np.asarray(x, dtype=float) for x in sides if len(x) > 1]
    dof = sum(len(x) - 1 for x in repeated)
    if not dof:
        return None
    sd = math.sqrt(sum(((x - x.mean()) ** 2).sum() for x in repeated) / dof)
    return sd if sd > 0 else None


def sd_interval(sd: float, dof: int) -> tuple[float, float]:
    """The 95% interval of a standard deviation estimated with `dof` degrees of freedom
    (chi-square): six degrees of freedom leave it uncertain by a factor of about 2 up, 0.6 down."""
    tail = (1 - CONFIDENCE) / 2
    return (sd * math.sqrt(dof / stats.chi2.ppf(1 - tail, dof)), sd * math.sqrt(dof / stats.chi2.ppf(tail, dof)))


def power(gap: float, sd: float, seeds: int, threshold: float = P_THRESHOLD) -> float:
    """The chance that Welch's two-sided test of `seeds` a side finds a true gap at p <
    threshold. Up to SIMULATED_SEEDS a side it is simulated (POWER_DRAWS pairs of normal
    samples, a fixed generator: the same answer every time): Welch's degrees of freedom vary
    from sample to sample, and the pooled t's power overstates it at few seeds (31% against
    24% for a 2-sd gap at 4 a side). Beyond, the two agree and the noncentral t gives it."""
    if seeds > SIMULATED_SEEDS:
        dof = 2 * seeds - 2
        critical, shift = stats.t.ppf(1 - threshold / 2, dof), gap / (sd * math.sqrt(2 / seeds))
        return float(stats.nct.sf(critical, dof, shift) + stats.nct.cdf(-critical, dof, shift))
    rng = np.random.default_rng(POWER_SEED)
    a = rng.standard_normal((POWER_DRAWS, seeds)) + gap / sd
    b = rng.standard_normal((POWER_DRAWS, seeds))
    va, vb = a.var(axis=1, ddof=1) / seeds, b.var(axis=1, ddof=1) / seeds
    dof = (va + vb) ** 2 / ((va ** 2 + vb ** 2) / (seeds - 1))
    t = (a.mean(axis=1) - b.mean(axis=1)) / np.sqrt(va + vb)
    return float(np.mean(2 * stats.t.sf(np.abs(t), dof) < threshold))


def seeds_for_power(gap: float, sd: Optional[float], target: float = POWER,
                    threshold: float = P_THRESHOLD) -> Optional[int]:
    """The fewest seeds a side that find a gap of `gap` with probability `target`; None
    when the sd is unknown or more than MAX_SEEDS would be needed. The normal approximation
    starts the search just below the answer (the t-test needs a few more seeds, never fewer)."""
    if sd is None or not sd > 0 or not gap > 0:
        return None
    z = stats.norm.ppf(1 - threshold / 2) + stats.norm.ppf(target)
    approximate = 2 * (z * sd / gap) ** 2
    if approximate > MAX_SEEDS:
        return None
    seeds = max(2, math.floor(approximate))
    while power(gap, sd, seeds, threshold) < target:
        seeds += 1
        if seeds > MAX_SEEDS:
            return None
    return seeds


def judge(metric: str, a_label: str, b_label: str, diff: float, interval: tuple[float, float],
          p_value: float) -> str:
    """The verdict in words, naming the better side for the metric's direction."""
    if p_value >= P_THRESHOLD or diff == 0:
        return f"not distinguishable at p < {P_THRESHOLD:g} (p = {p_value:.2g})"
    a_wins = (diff > 0) == HIGHER_IS_BETTER[metric]
    winner, loser = (a_label, b_label) if a_wins else (b_label, a_label)
    # The winner's margin is |diff|; its interval is diff's, negated when a has the lower mean.
    low, high = interval if diff > 0 else (-interval[1], -interval[0])
    # The margin to 3 significant digits, its bounds to as many decimals.
    decimals = max(0, 2 - math.floor(math.log10(float(f"{abs(diff):.3g}"))))
    return (f"{winner} beats {loser} by {abs(diff):.{decimals}f} ({low:.{decimals}f} to "
            f"{high:.{decimals}f}), p = {p_value:.2g}")
