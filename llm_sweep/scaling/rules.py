"""When the data constrain a fitted value: the rule the report applies and states.

An interval is the 95% bootstrap interval of the value's refits (interval(): the basic
bootstrap around the fitted law, widened for the fit's degrees of freedom). It counts only
if few refits failed (MAX_FAILED) and if the fit it comes from did not rest on a bound of
its search (a parameter on a bound constrains nothing, and the others moved to make up
for it). Then its width decides, measured the way the value is used:

- Exponents (alpha, beta, a, b) by absolute width: the full 95% interval at most 0.1. The
  compute-optimal tokens per parameter grows as C^(1 - 2a) (6 N D compute), so an error
  of +-0.05 in a moves it by at most 10^0.1 = 1.26x at 10x outside the fitted compute,
  the farthest the summary quotes; and 0.1 is half the gap between Chinchilla's a = 0.50
  and Kaplan et al.'s 0.73, the two answers a study is asked to tell apart. A relative
  width would fail near 0 and pass a = 0.5 +- 0.25.
- Sizes and ratios (N_opt, D_opt, tokens per parameter, E, A, B) by relative width: the
  interval's high end at most 2x its low end (+-41% around its geometric centre). That is
  narrower than the 3.3x between the two references the study asks about (the seed's ~6
  and Chinchilla's ~20 tokens per parameter), so a constrained interval never holds both.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
from scipy import stats

from llm_sweep.scaling.estimates import Bounds, Json

EXPONENT_CI_WIDTH = 0.1
SIZE_CI_RATIO = 2.0
MAX_FAILED = 0.1  # share of refits that may fail (or sit on a bound) before nothing is constrained
FAR = 10.0  # beyond this factor outside the fitted budgets, an optimum is neither quoted nor drawn
ROUNDING = 1e-9  # an interval exactly at a limit (0.55 - 0.45) passes
CONFIDENCE = 0.95
EXPONENTS = frozenset({"alpha", "beta", "a", "b", "alpha - beta"})


@dataclass(frozen=True)
class ConstraintRule:
    """The rule as fit.json records it ("constraint_rule"), so a reader knows what its
    "constrained" flags mean."""

    exponent_ci_width: float = EXPONENT_CI_WIDTH
    size_ci_ratio: float = SIZE_CI_RATIO
    max_failed: float = MAX_FAILED

    def text(self) -> str:
        """The rule in a sentence, as summary.md states it."""
        return (f"A value counts as constrained when its 95% bootstrap interval is at most "
                f"{self.exponent_ci_width:g} wide for an exponent (alpha, beta, a, b) or spans at most a "
                f"factor {self.size_ci_ratio:g} for a size or ratio (N_opt, D_opt, tokens per parameter, "
                f"E, A, B), no more than {self.max_failed:.0%} of its refits failed or sat on a bound, "
                "and the fit it comes from does not rest on a bound of its search.")

    def judge(self, name: str, value: Optional[float], ci: Bounds, failed: float = 0.0,
              blocked: str = "") -> str:
        """Why `name` is not constrained; "" when it is. `blocked`: why the fit it comes
        from constrains nothing (a parameter on a bound, an exponent it rests on)."""
        if blocked:
            return blocked
        if value is None or not np.isfinite(value):
            return "no finite value"
        if failed > self.max_failed:
            return f"{failed:.0%} of the refits failed (rule: at most {self.max_failed:.0%})"
        low, high = ci
        if low is None or high is None:
            return "no finite interval"
        if name in EXPONENTS:
            width = high - low
            return "" if width <= self.exponent_ci_width * (1 + ROUNDING) else (
                f"95% CI {width:.3g} wide (rule: at most {self.exponent_ci_width:g})")
        if low <= 0:
            return "95% CI reaches 0"
        return "" if high / low <= self.size_ci_ratio * (1 + ROUNDING) else (
            f"95% CI spans {high / low:.3g}x (rule: at most {self.size_ci_ratio:g}x)")

    def to_json(self) -> Json:
        return {"exponent_ci_width": self.exponent_ci_width, "size_ci_ratio": self.size_ci_ratio,
                "max_failed": self.max_failed}

    @classmethod
    def from_json(cls, block: Json) -> ConstraintRule:
        return cls(block["exponent_ci_width"], block["size_ci_ratio"], block["max_failed"])


RULE = ConstraintRule()


def widening(dof: Optional[int]) -> float:
    """How much wider than its percentiles a bootstrap interval is printed: the Student-t
    quantile over the normal one at the fit's residual degrees of freedom (1 without them).
    The residuals a fit leaves estimate its noise with few degrees of freedom; the factor is
    what a t interval adds over a normal one for that (bootstrap.py, docs/statistics.md)."""
    if dof is None:
        return 1.0
    return float(stats.t.ppf(0.5 + CONFIDENCE / 2, dof) / stats.norm.ppf(0.5 + CONFIDENCE / 2))


def interval(samples: np.ndarray, value: Optional[float] = None, dof: Optional[int] = None,
             log: bool = False, centre: Optional[float] = None) -> Bounds:
    """The 95% interval of refits; NaN (a failed refit) is left out, an infinite bound is
    None. Without `value`: the refits' percentiles. With the full fit's `value` and the
    bootstrap world's truth `centre` (what the refits estimate: the law they were drawn
    from), the basic bootstrap: the value minus the refits' errors' percentiles, which
    also takes out what the estimator's bias does in the bootstrap world (Approach 2's
    grid). Each side is widened by widening(`dof`); `log`: on a log scale (sizes, ratios)."""
    samples = np.asarray(samples, dtype=float)
    samples = samples[~np.isnan(samples)]
    if not len(samples):
        return None, None
    tail = 100 * (1 - CONFIDENCE) / 2
    factor = widening(dof)
    with np.errstate(invalid="ignore", divide="ignore"):  # inf - inf between two infinite refits: NaN
        if value is None or centre is None or not (np.isfinite(value) and np.isfinite(centre)):
            low, high = np.percentile(samples, [tail, 100 - tail])
            return tuple(float(q) if np.isfinite(q) else None for q in (low, high))
        if log and min(value, centre) <= 0:
            return None, None
        scale = np.log if log else (lambda x: x)
        errors = scale(np.where(samples > 0, samples, np.nan) if log else samples) - scale(centre)
        errors = errors[~np.isnan(errors)]
        if not len(errors):
            return None, None
        below, above = np.percentile(errors, [tail, 100 - tail])
        low, high = scale(value) - factor * above, scale(value) - factor * below
        if log:
            low, high = np.exp(low), np.exp(high)
    return tuple(float(q) if np.isfinite(q) else None for q in (low, high))


def number(value: float) -> Optional[float]:
    """A JSON number: None where it is not finite."""
    return float(value) if np.isfinite(value) else None
