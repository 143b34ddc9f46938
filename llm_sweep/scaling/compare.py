"""Approach 2 against Approach 3, and the parabola's assumptions checked on the runs.

A parabola in ln N is exact only for an iso-FLOP curve that is symmetric in ln N and
sampled symmetrically about its minimum; Czech et al. (2026, arXiv 2603.22339) show how
each departure biases Approach 2 even without noise. Each is measured here from the runs:

- grid width: sizes reaching far from the vertex (more than WIDE_REACH x N_opt or less
  than N_opt / WIDE_REACH) are where the parabola departs most from the curve;
- off-centre grid: the vertex in the outer quarter of its budget's range of ln N (its
  position, 0 at the smallest size and 1 at the largest, below OFF_CENTRE or above
  1 - OFF_CENTRE) weighs one flank of the curve more than the other;
- alpha != beta: with alpha != beta the curve itself is asymmetric in ln N (the fitted
  alpha - beta, its 95% interval excluding 0).

What each costs is computed from the fitted law itself: the parabola through L(N, D) at
each budget's own sizes against the law's exact optimum (the bias), and again with the
sizes moved so their range is centred on the optimum (what is left is the asymmetry's)
and pulled halfway towards it (what is left without the outer half of the width). A
cause is named when the runs show it and, where the law is constrained, it moves
tokens per parameter by more than MATERIAL; with an unconstrained law, the runs alone
decide (and alpha != beta cannot be judged). Approach 2's intervals are corrected for
this bias (approach2.py: each refit's error is taken against the fitted law's own
optimum), its estimates are not: the bias is printed beside them.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from llm_sweep.scaling.points import Data
from llm_sweep.scaling.approach2 import vertex
from llm_sweep.scaling.estimates import Estimate, IsoflopMinimum, LossSurface, PowerLaws, at_largest_budget
from llm_sweep.scaling.optimum import tokens_per_param
from llm_sweep.scaling.fit_record import Comparison
from llm_sweep.scaling.rules import interval, number
from llm_sweep.scaling.surface import parameters, surface_optimum

OFF_CENTRE = 0.25
WIDE_REACH = 4.0
MATERIAL = 0.01  # a cause that moves tokens per parameter by less is not named
CAUSES = ("grid width", "off-centre grid", "alpha != beta")


def parabola_bias(theta: np.ndarray, ln_n: np.ndarray, ln_c: float, per_token: np.ndarray) -> float:
    """Approach 2's tokens per parameter on the law's own iso-FLOP curve at these sizes,
    over the law's exact optimum, minus 1 (NaN where the parabola has no minimum)."""
    e, a, b, alpha, beta = parameters(theta)
    ln_d = ln_c - per_token[0] - per_token[1] * ln_n
    ln_opt = vertex(ln_n, e + a * np.exp(-alpha * ln_n) + b * np.exp(-beta * ln_d))[1]
    exact = surface_optimum(theta, ln_c, per_token)
    return float(tokens_per_param(ln_c, ln_opt, per_token) / tokens_per_param(ln_c, exact, per_token) - 1)


def biases(theta: np.ndarray, ln_n: np.ndarray, ln_c: float, per_token: np.ndarray) -> tuple[float, float, float]:
    """The parabola's bias at these sizes, with them centred on the law's optimum, and
    with them pulled halfway towards it."""
    exact = float(surface_optimum(theta, ln_c, per_token))
    centred = ln_n + exact - (ln_n.min() + ln_n.max()) / 2
    narrow = exact + (ln_n - exact) / 2
    return tuple(parabola_bias(theta, sizes, ln_c, per_token) for sizes in (ln_n, centred, narrow))


def causes(minima: tuple[IsoflopMinimum, ...], alpha_minus_beta: Estimate, law: LossSurface,
           bias: np.ndarray) -> tuple[str, ...]:
    """Which of the parabola's assumptions the runs break (CAUSES' names); `bias`: per
    budget, the parabola's bias as is, centred and narrowed (NaN rows where not located)."""
    located = [j for j, m in enumerate(minima) if m.located and m.position is not None]
    low, high = alpha_minus_beta.ci
    judged = bool(law.alpha.constrained and law.beta.constrained and np.isfinite(bias[located]).all())
    as_is, centred, narrow = np.abs(bias[located]).T if located else np.zeros((3, 0))
    effect = {"grid width": as_is - narrow, "off-centre grid": np.abs(bias[located, 0] - bias[located, 1]),
              "alpha != beta": centred}
    shown = {
        "grid width": any(minima[j].reach > WIDE_REACH for j in located),
        "off-centre grid": any(not OFF_CENTRE <= minima[j].position <= 1 - OFF_CENTRE for j in located),
        "alpha != beta": judged and None not in (low, high) and (low > 0 or high < 0),
    }
    return tuple(name for name in CAUSES
                 if shown[name] and (not judged or (len(located) and effect[name].max() > MATERIAL)))


def _disjoint(first: Estimate, second: Estimate) -> Optional[bool]:
    if None in (*first.ci, *second.ci):
        return None
    return bool(first.ci[1] < second.ci[0] or second.ci[1] < first.ci[0])


def compare(data: Data, ln_n: np.ndarray, per_token: np.ndarray, two: PowerLaws, law: LossSurface,
            theta: np.ndarray, boot: np.ndarray, dof: Optional[int] = None) -> Comparison:
    """Approach 2 against the law fitted by variable projection (`theta` and its refits
    `boot`, rows of NaN failed) at the largest budget."""
    none = Estimate(None, (None, None))
    at2, at3 = at_largest_budget(two.at_compute), at_largest_budget(law.at_compute)
    ratio2 = at2.tokens_per_param if at2 else none
    ratio3 = at3.tokens_per_param if at3 else none
    a2, a3 = Estimate(two.a.value, two.a.ci), Estimate(law.a.value, law.a.ci)
    disagreements = [_disjoint(ratio2, ratio3), _disjoint(a2, a3)]
    disagree = True if True in disagreements else None if None in disagreements else False
    alpha_minus_beta = Estimate(number(theta[3] - theta[4]), interval(boot[:, 3] - boot[:, 4], float(theta[3] - theta[4]), dof,
                                                                          centre=float(theta[3] - theta[4])))
    bias = np.array([biases(theta, ln_n[group.members], np.log(group.compute), per_token)
                     if minimum.located and law.fitted else (np.nan,) * 3
                     for group, minimum in zip(data.budgets, two.minima)]).reshape(len(data.budgets), 3)
    column = lambda j: tuple(number(x) for x in bias[:, j])
    return Comparison(data.budgets[-1].compute, ratio2, ratio3, a2, a3, disagree, alpha_minus_beta,
                      causes(two.minima, alpha_minus_beta, law, bias), column(0), column(1), column(2))
