"""Compute-optimal scaling laws from finished runs (Hoffmann et al., 2022, Approaches 2
and 3): for a compute budget C, the model size N and the tokens D that minimise the loss.

The entry points:

- fit_scaling(points, resamples, seed): everything report --fit writes (fit.json): both
  approaches, Approach 3 searched two ways (L-BFGS as Chinchilla did, lbfgs.py, and
  by variable projection, varpro.py), with N = all and N = non-embedding
  parameters, 95% bootstrap intervals, whether the data constrain each value
  (rules.py) and how the approaches compare (compare.py).
- fit_point_estimates(points, compute): one dataset's fitted law and Approach 2's
  frontier, without a bootstrap, in tens of milliseconds: for simulating a study many
  times (point_estimates() takes plain arrays of N, D, loss and compute group).

The parts: points.py (runs to points, compute groups, resamples), approach2.py
(Approach 2), surface.py (Approach 3's L(N, D) and its bounds), optimum.py (the
optimum at one compute).

Intervals: a fixed-design residual bootstrap around variable projection's law
(bootstrap.py), refitting both approaches; its percentile intervals are widened for the
fit's residual degrees of freedom (rules.py). The runs are put in a fixed order first, so
the intervals do not depend on the order they came in.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Optional, Sequence

import numpy as np

from llm_sweep.core.references import (SEED_COMPUTE, SEED_NON_EMBEDDING_PARAMS, SEED_PARAMS,
                                       SEED_TOKENS)
from llm_sweep.scaling import lbfgs, varpro
from llm_sweep.scaling.compare import compare
from llm_sweep.scaling.bootstrap import Resample, fixed_design_draws, residual_dof
from llm_sweep.scaling.law import Law
from llm_sweep.scaling.points import Data, RunPoint, check_enough, collect, noise
from llm_sweep.scaling.approach2 import approach2, budget_minimum, frontier
from llm_sweep.scaling.estimates import LARGEST_BUDGET, PARAMETERS, SEED_RUN, FlopsPerToken
from llm_sweep.scaling.lbfgs import BLAS
from llm_sweep.scaling.optimum import outside_factor, tokens_per_param
from llm_sweep.scaling.fit_record import FitInputs, FitResult, ScalingFit, SeedRun
from llm_sweep.scaling.rules import RULE
from llm_sweep.scaling.surface import bound_hits, constants, loss_surface, parameters, surface_optimum

__all__ = ["RESAMPLES", "RunPoint", "fit_point_estimates", "fit_scaling", "outside_factor", "point_estimates"]

RESAMPLES = 200


def _per_token(ln_n: np.ndarray, compute: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """(ln c, k) of flops per token = c N^k, fitted to the runs' compute / tokens."""
    return np.polyfit(ln_n, np.log(compute / tokens), 1)[::-1]


def _refits(search, ln_n: np.ndarray, ln_d: np.ndarray, draws: Sequence[Resample], *start) -> np.ndarray:
    """(resamples, 5) of one search's refits (rows of NaN: failed)."""
    return np.array([search(ln_n[d.index], ln_d[d.index], d.loss, *start) for d in draws]).reshape(len(draws), 5)


def fit_one(data: Data, sizes: np.ndarray, targets: dict[str, float], resamples: int, seed: int,
            with_lbfgs: bool = True) -> ScalingFit:
    """Approaches 2 and 3 with N = sizes (total or non-embedding parameters), their
    intervals from one fixed-design bootstrap around variable projection's law (bootstrap.py).
    Without `with_lbfgs`, Approach 3 is searched only by variable projection (the calibration
    harness: the law the report uses, at a fraction of the cost)."""
    ln_n, ln_d = np.log(sizes), np.log(data.tokens)
    per_token = _per_token(ln_n, data.compute, data.tokens)
    fitted, span = (ln_n, ln_d, data.loss), (data.budgets[0].compute, data.budgets[-1].compute)
    theta = varpro.fit_varpro(*fitted)
    # No law, no residuals to resample: no intervals (nothing is constrained), not zero-width ones.
    draws = [] if np.isnan(theta).any() else fixed_design_draws(
        data, Law(*parameters(theta)).loss(sizes, data.tokens), resamples, seed)
    boot = _refits(varpro.fit_varpro, ln_n, ln_d, draws)
    dof = residual_dof(len(data.loss))
    law = loss_surface(varpro.METHOD, varpro.BOX, theta, boot, fitted, targets, per_token, span,
                       lbfgs.objective(theta, *fitted), dof)
    two = approach2(data, ln_n, draws, targets, per_token, dof, theta)
    if with_lbfgs:
        full = lbfgs.fit_lbfgs(*fitted)
        # Each refit starts from the full fit and from the grid's best for its own data.
        chinchilla = loss_surface(lbfgs.METHOD, lbfgs.BOX, full,
                                  _refits(lbfgs.fit_lbfgs, ln_n, ln_d, draws, full), fitted, targets,
                                  per_token, span, lbfgs.objective(full, *fitted), dof)
    else:
        chinchilla = law
    return ScalingFit(two, chinchilla, FlopsPerToken(float(np.exp(per_token[0])), float(per_token[1])), law,
                      compare(data, ln_n, per_token, two, law, theta, boot, dof))


def _inputs(data: Data, skipped: Optional[dict[str, int]], count: int, seed: int) -> FitInputs:
    span = lambda values: (float(values.min()), float(values.max()))
    return FitInputs(data.n_runs, len(data.seed_losses), len(data.budgets), data.binned, dict(skipped or {}),
                     data.not_best, span(data.compute), span(data.params), span(data.tokens), count, seed,
                     SeedRun(SEED_PARAMS, SEED_NON_EMBEDDING_PARAMS, SEED_TOKENS, SEED_COMPUTE))


def fit_scaling(points: Sequence[RunPoint], resamples: int = RESAMPLES, seed: int = 0,
                skipped: Optional[dict[str, int]] = None, with_lbfgs: bool = True) -> FitResult:
    """Both approaches with N = total and N = non-embedding params (fit.json: its to_json()).
    The result depends on the runs, not on their order."""
    data = collect(points)
    check_enough(data)
    targets = {LARGEST_BUDGET: data.budgets[-1].compute, SEED_RUN: SEED_COMPUTE}
    with BLAS.limit(limits=1, user_api="blas"):  # the parabolas and lines too (lbfgs.BLAS)
        total = fit_one(data, data.params, targets, resamples, seed, with_lbfgs)
        non_embedding = fit_one(data, data.non_embedding_params, targets, resamples, seed, with_lbfgs)
    residuals = data.loss - total.law.loss(data.params, data.tokens)
    scatter = float(np.sqrt((residuals ** 2).sum() / (len(residuals) - 5))) if len(residuals) > 5 else None
    return FitResult(data.n_runs, replace(noise(data), scatter=scatter), _inputs(data, skipped, resamples, seed),
                     total, non_embedding, rule=RULE)


def fit_point_estimates(points: Sequence[RunPoint], compute: Optional[float] = None) -> dict[str, float]:
    """One dataset fitted as report --fit fits it (seeds averaged, the best config per size
    and budget), without a bootstrap, in tens of milliseconds; the estimates at `compute`
    (default: the largest budget) as point_estimates() names them."""
    data = collect(points)
    budget = np.empty(len(data.loss))
    for group in data.budgets:
        budget[group.members] = group.compute
    return point_estimates(data.params, data.tokens, data.loss, budget, compute, data.compute)


def point_estimates(n: np.ndarray, d: np.ndarray, loss: np.ndarray, budget: np.ndarray,
                    compute: Optional[float] = None, flops: Optional[np.ndarray] = None) -> dict[str, float]:
    """The scaling law of one dataset without intervals. One entry per point: parameters
    `n`, tokens `d`, final `loss` and compute group `budget` (the group's C, equal for its
    points); `flops` is each point's compute (default 6 n d). The keys:

    - E, A, B, alpha, beta: L(N, D) = E + A / N^alpha + B / D^beta by variable projection;
      a3, b3: its N_opt ∝ C^a and D_opt ∝ C^b (a = beta / (alpha + k beta), b = 1 - k a,
      flops per token ∝ N^k); tokens_per_param3: its D_opt / N_opt at `compute`;
      at_bound3: how many of E, A, B, alpha, beta sit on a bound of the search (then the
      report calls none of it constrained);
    - a2, b2, tokens_per_param2: Approach 2's frontier through the located iso-FLOP
      minima (NaN with fewer than two), located2: how many budgets locate one;
    - compute: where the tokens per parameter are (default: the largest budget).
    """
    n, d, loss, budget = (np.asarray(x, dtype=float) for x in (n, d, loss, budget))
    ln_n, ln_d = np.log(n), np.log(d)
    per_token = _per_token(ln_n, 6 * n * d if flops is None else np.asarray(flops, dtype=float), d)
    groups = np.unique(budget)
    ln_c_at = float(np.log(groups[-1] if compute is None else compute))
    with BLAS.limit(limits=1, user_api="blas"):  # (lbfgs.BLAS)
        minima = [budget_minimum(ln_n[budget == c], loss[budget == c]) for c in groups]
        line = frontier(np.log(groups), np.array([ln_opt if not why else np.nan for _, ln_opt, why in minima]),
                        per_token)
        theta = varpro.fit_varpro(ln_n, ln_d, loss)
    values = constants(theta, per_token[1])
    low, high = bound_hits(parameters(theta), varpro.BOX, ln_n, ln_d, loss)
    found = {name: float(values[name]) for name in PARAMETERS}
    found.update(a3=float(values["a"]), b3=float(values["b"]), at_bound3=float((low | high).sum()),
                 tokens_per_param3=float(tokens_per_param(ln_c_at, surface_optimum(theta, ln_c_at, per_token),
                                                          per_token)),
                 a2=float(line[0]), b2=float(line[2]), located2=float(sum(not why for _, _, why in minima)),
                 tokens_per_param2=float(tokens_per_param(ln_c_at, line[0] * ln_c_at + line[1], per_token)),
                 compute=float(np.exp(ln_c_at)))
    return found
