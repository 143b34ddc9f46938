"""The compute-optimal N, D and tokens per parameter at one compute, as either approach
gives them, with their intervals, how far that compute lies outside the fitted budgets,
and whether the data constrain them.

Compute. C = flops_per_token x D, counted as MFU counts it (6 N plus attention). Where an
optimum N needs its D, flops per token is a power of N fitted to the runs' own logged
compute / tokens: D_opt = C / flops_per_token(N_opt), exactly C / 6N for a plain 6 N count.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from llm_sweep.scaling.estimates import Estimate, Optimum
from llm_sweep.scaling.rules import RULE, interval, number


def tokens_per_param(ln_c: float, ln_n: np.ndarray, per_token: np.ndarray) -> np.ndarray:
    """D / N at N = exp(ln_n) and compute exp(ln_c): C / (c N^k) / N."""
    with np.errstate(over="ignore"):  # a wild refit far outside: inf, beyond any interval
        return np.exp(ln_c - per_token[0] - (per_token[1] + 1) * np.asarray(ln_n))


def outside_factor(compute: float, lo: float, hi: float, rel_tol: float = 1e-9) -> float:
    """How many times `compute` lies outside [lo, hi]; exactly 1 inside, the ends included
    to rounding (a compute that went through exp(log(C)) is still its own budget)."""
    factor = max(lo / compute, compute / hi)
    return factor if factor > 1 + rel_tol else 1.0


def optimum(label: str, ln_c: float, ln_n: float, ln_n_samples: np.ndarray, per_token: np.ndarray,
            budget_range: tuple[float, float], failed: float, blocked: str, dof: Optional[int] = None,
            centre: Optional[float] = None) -> Optimum:
    """The optimum at one compute: N, D and tokens per parameter with intervals (NaN
    samples, failed refits, left out). `blocked`: why the law it comes from constrains
    nothing; `failed`: the share of refits that failed; `dof`: the fit's residual degrees
    of freedom, which widen the intervals; `centre`: the ln N_opt of the law the refits
    were drawn from, where the estimator is not that law's own (Approach 2; rules.interval)."""
    ratio, ratio_samples = tokens_per_param(ln_c, ln_n, per_token), tokens_per_param(ln_c, ln_n_samples, per_token)
    with np.errstate(over="ignore"):
        n_samples = np.exp(ln_n_samples)
    truth = ln_n if centre is None else centre  # the bootstrap world's ln N_opt
    tokens_ci = interval(ratio_samples, float(ratio), dof, log=True,
                         centre=float(tokens_per_param(ln_c, truth, per_token)))
    reason = RULE.judge("tokens_per_param", float(ratio), tokens_ci, failed, blocked)
    outside = outside_factor(float(np.exp(ln_c)), *budget_range)
    return Optimum(label, float(np.exp(ln_c)), Estimate(number(np.exp(ln_n)), interval(n_samples, float(np.exp(ln_n)), dof, log=True,
                                                                                     centre=float(np.exp(truth)))),
                   number(ratio * np.exp(ln_n)), Estimate(number(ratio), tokens_ci), bool(outside > 1.0),
                   float(outside), not reason, reason)


def rests_on(**constants) -> str:
    """Why a value derived from these constants is not constrained ("" when they all are)."""
    loose = [name for name, constant in constants.items() if not constant.constrained]
    return f"rests on {', '.join(loose)}: not constrained" if loose else ""
