"""Approach 3 as Chinchilla fitted it: all five parameters of L(N, D) = E + A / N^alpha +
B / D^beta at once, by L-BFGS-B on a Huber loss (delta 1e-3) of the log-residuals
ln L - LSE(ln A - alpha ln N, ln B - beta ln D, ln E), from the best starts of their grid.

Besiroglu et al. (2024) showed how fragile this is: the objective has flat valleys and
local optima, so a refit that starts in the wrong place stops in the wrong place. Each
fit here therefore starts from several points (the grid's best, and for a bootstrap
refit also the full data's optimum) and keeps the lowest objective among the starts
that converged; when none converges the fit has failed, and says so (NaN), rather than
handing on wherever the optimizer stopped.
"""
from __future__ import annotations

import itertools
from typing import Optional

import numpy as np
from scipy.optimize import minimize
from threadpoolctl import ThreadpoolController

HUBER_DELTA = 1e-3
# ln A, ln B, ln E, alpha, beta: Chinchilla's grid of starts; the best few are refined.
AXES = (np.arange(0, 30, 5.0), np.arange(0, 30, 5.0), np.arange(-1, 1.5, 0.5), np.arange(0, 2.5, 0.5),
        np.arange(0, 2.5, 0.5))
GRID = np.array(list(itertools.product(*AXES)), dtype=float)
STARTS = 8  # from the grid, for the full data
# From the grid, for a bootstrap refit, besides the full data's optimum: on the CPU study's
# runs the full fit alone missed the best of 9 starts in 4 of 100 refits, with the grid's
# best start added in none.
REFIT_STARTS = 1
LN_E_BOUNDS = (-5.0, 5.0)
EXPONENT_BOUNDS = (0.0, 3.0)
BOUNDS = ((None, None), (None, None), LN_E_BOUNDS, EXPONENT_BOUNDS, EXPONENT_BOUNDS)
# The BLAS libraries numpy and scipy (L-BFGS-B's own vector steps) have loaded. A fit is
# thousands of tiny problems: BLAS threads only add start-up and contention (ten times
# slower on a busy 2-core machine), so each fit runs them on one thread.
BLAS = ThreadpoolController()
METHOD = "L-BFGS-B on all five parameters (Huber on log-residuals, Chinchilla's grid of starts)"
# The search box in fit.json's terms: E, A, B as values, alpha and beta as themselves.
BOX = {"E": tuple(float(np.exp(bound)) for bound in LN_E_BOUNDS), "A": (None, None), "B": (None, None),
       "alpha": EXPONENT_BOUNDS, "beta": EXPONENT_BOUNDS}


def _objective(theta: np.ndarray, x: np.ndarray, y: np.ndarray, ln_l: np.ndarray
               ) -> tuple[float, np.ndarray]:
    """Huber loss on the log-residuals and its gradient, both in units of delta; x and y
    are ln N and ln D centred, which the first two constants absorb."""
    t0, t1 = theta[0] - theta[3] * x, theta[1] - theta[4] * y
    pred = np.logaddexp(np.logaddexp(t0, t1), theta[2])
    r = pred - ln_l
    slope = np.clip(r, -HUBER_DELTA, HUBER_DELTA)  # Huber's derivative
    huber = slope * (r - 0.5 * slope)  # r^2 / 2 within delta, delta (|r| - delta / 2) beyond
    s0, s1, s2 = slope * np.exp(t0 - pred), slope * np.exp(t1 - pred), slope * np.exp(theta[2] - pred)
    grad = np.array([s0.sum(), s1.sum(), s2.sum(), -(s0 * x).sum(), -(s1 * y).sum()])  # no BLAS call per step
    return huber.sum() / HUBER_DELTA, grad / HUBER_DELTA


def objective(theta: np.ndarray, ln_n: np.ndarray, ln_d: np.ndarray, loss: np.ndarray) -> float:
    """The objective at (ln A, ln B, ln E, alpha, beta), in units of delta: the same for
    every search of L(N, D), so their optima compare."""
    with np.errstate(invalid="ignore"):
        return float(_objective(theta, ln_n, ln_d, np.log(loss))[0])


def screen(ln_n: np.ndarray, ln_d: np.ndarray, ln_l: np.ndarray, k: int) -> np.ndarray:
    """The k grid starts with the lowest objective. The grid is a product, so each term is
    computed once per value of its own two axes and the sum broadcast over the rest (in
    GRID's order: ln A, ln B, ln E, alpha, beta)."""
    ln_a, ln_b, ln_e, alpha, beta = AXES
    n_term = np.exp(ln_a[:, None, None] - alpha[None, :, None] * ln_n)  # (ln A, alpha, run)
    d_term = np.exp(ln_b[:, None, None] - beta[None, :, None] * ln_d)  # (ln B, beta, run)
    pred = np.log(n_term[:, None, None, :, None] + d_term[None, :, None, None, :]
                  + np.exp(ln_e)[None, None, :, None, None, None])
    r = pred.reshape(len(GRID), -1) - ln_l
    slope = np.clip(r, -HUBER_DELTA, HUBER_DELTA)
    score = (slope * (r - 0.5 * slope)).sum(axis=1)
    return GRID[np.argsort(score, kind="stable")[:k]]


def fit_lbfgs(ln_n: np.ndarray, ln_d: np.ndarray, loss: np.ndarray,
              also_from: Optional[np.ndarray] = None) -> np.ndarray:
    """(ln A, ln B, ln E, alpha, beta) with the lowest objective among the starts that
    converged: the best STARTS of the grid, or with `also_from` (a full fit to refit
    near) that and the best REFIT_STARTS of the grid; all NaN when none converged.
    Centring ln N and ln D halves L-BFGS's iterations."""
    ln_l = np.log(loss)
    starts = screen(ln_n, ln_d, ln_l, STARTS if also_from is None else REFIT_STARTS)
    if also_from is not None and np.all(np.isfinite(also_from)):
        starts = np.vstack([also_from[None], starts])
    shift = np.array([ln_n.mean(), ln_d.mean()])
    centred = starts.copy()
    centred[:, :2] -= starts[:, 3:] * shift
    with BLAS.limit(limits=1, user_api="blas"):
        results = [minimize(_objective, start, args=(ln_n - shift[0], ln_d - shift[1], ln_l), jac=True,
                            method="L-BFGS-B", bounds=BOUNDS, options={"ftol": 1e-12, "gtol": 1e-8, "maxiter": 500})
                   for start in centred]
    converged = [result for result in results if result.success and np.all(np.isfinite(result.x))]
    if not converged:
        return np.full(5, np.nan)
    theta = min(converged, key=lambda result: result.fun).x.copy()
    theta[:2] += theta[3:] * shift
    return theta
