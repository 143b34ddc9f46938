"""Is one side of a comparison better, or can its seeds not tell? A verdict over seeds.

Each side is the final values of one config over its seeds. The difference of the means
gets a 95% bootstrap interval (each side's seeds resampled with replacement, the
difference of the resampled means, the 2.5th and 97.5th percentiles; a fixed generator
seed, so a report is reproducible) and Welch's t-test, which does not assume the two
sides vary alike. A side wins only at p < 0.01, the bar modded-nanogpt sets for a record
over repeated seeds. A side with one seed has no spread to test against: no verdict,
and no interval or p-value that would look like one.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np
from scipy import stats

from llm_sweep.core.run_record import FINAL_VAL_ACC, FINAL_VAL_LOSS, FINAL_VAL_PPL

P_THRESHOLD = 0.01
CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
ONE_SEED = "one seed: no verdict"
NO_SPREAD = "no spread between seeds on either side: no verdict"
# Final val loss minus what a fitted L(N, D) predicts from the run's parameters and tokens
# (llm_sweep.report.shape_residuals): the shape's own effect, lower is better.
SHAPE_RESIDUAL = "residual/val_loss"
# Which way is better, per metric: a metric missing here is an error, never a guess.
HIGHER_IS_BETTER = {FINAL_VAL_LOSS: False, FINAL_VAL_PPL: False, FINAL_VAL_ACC: True,
                    SHAPE_RESIDUAL: False}


@dataclass(frozen=True)
class Comparison:
    """Side a against side b on one metric; `diff` is mean_a - mean_b, `diff_ci` its 95%
    bootstrap interval (None with one seed on a side), `p_value` Welch's (None likewise)."""

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

    def record(self) -> dict[str, Any]:
        """The comparison as one JSON object (null where a number does not exist)."""
        return {"metric": self.metric, "a": self.a, "b": self.b, "n_a": self.n_a, "n_b": self.n_b,
                "mean_a": self.mean_a, "mean_b": self.mean_b, "diff": self.diff,
                "diff_ci": None if self.diff_ci is None else list(self.diff_ci),
                "p_value": self.p_value, "verdict": self.verdict}


def compare(metric: str, a_label: str, a_values: Sequence[float], b_label: str,
            b_values: Sequence[float]) -> Comparison:
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
    if min(a.size, b.size) < 2:
        return Comparison(metric, a_label, b_label, a.size, b.size, mean_a, mean_b, diff, None, None,
                          ONE_SEED)
    interval = bootstrap_interval(a, b)
    p_value = welch_p_value(a, b)
    verdict = (NO_SPREAD if p_value is None
               else judge(metric, a_label, b_label, diff, interval, p_value))
    return Comparison(metric, a_label, b_label, a.size, b.size, mean_a, mean_b, diff, interval,
                      p_value, verdict)


def bootstrap_interval(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """The percentile interval of mean(a*) - mean(b*) over resamples of each side's seeds."""
    rng = np.random.default_rng(BOOTSTRAP_SEED)  # per call: a comparison's interval is its own
    return _percentiles(_resampled_means(a, rng) - _resampled_means(b, rng))


def mean_interval(values: Sequence[float]) -> Optional[tuple[float, float]]:
    """The 95% percentile bootstrap interval of one side's mean over its seeds; None with
    one seed."""
    x = np.asarray(values, dtype=float)
    if x.size < 2:
        return None
    return _percentiles(_resampled_means(x, np.random.default_rng(BOOTSTRAP_SEED)))


def _resampled_means(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return x[rng.integers(0, x.size, (BOOTSTRAP_RESAMPLES, x.size))].mean(axis=1)


def _percentiles(samples: np.ndarray) -> tuple[float, float]:
    tail = 100 * (1 - CONFIDENCE) / 2
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def welch_p_value(a: np.ndarray, b: np.ndarray) -> Optional[float]:
    """Welch's two-sided p-value; None when neither side varies (the test is undefined:
    scipy would answer 0 for any difference, or NaN)."""
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nearly equal values: a precision note
        return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


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
