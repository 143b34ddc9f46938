"""Approach 3 by variable projection (Golub and Pereyra, 1973; for scaling laws, Czech et
al., 2026, arXiv 2603.22339): for fixed exponents (alpha, beta), L = E + A / N^alpha +
B / D^beta is linear in (E, A, B), so that part is solved exactly, and only (alpha, beta)
is searched: a grid over the whole box, then a zoom around its best point.

The objective is the L-BFGS fit's (lbfgs.py), Huber with delta 1e-3, on relative
residuals (L_fit - L) / L, which equal its log-residuals to first order; so where the two
fits differ, one optimizer missed the optimum, not a different question answered. For
fixed exponents that objective is convex in (E, A, B) >= 0 and is minimized by
iteratively reweighted non-negative least squares (weights min(1, delta / |r|), each
step a majorizer of the Huber loss, so the objective never rises). A non-negative least
squares problem in three unknowns is solved exactly by trying every set of free unknowns
(the optimum is the unconstrained solution on its own support), for every grid point at once.
"""
from __future__ import annotations

import itertools

import numpy as np

from llm_sweep.scaling.lbfgs import BLAS, HUBER_DELTA

EXPONENT_BOX = (0.01, 3.0)  # alpha, beta: 0 would make N^-alpha the constant E already is
GRID_POINTS = 24  # per exponent, log-spaced over the box: steps of 28%
ZOOM_POINTS = 7  # per exponent and zoom level, over +-1 step of the level before
ZOOM_LEVELS = 6  # each divides the step by 3: exponents to within 0.02% of their own value
SCREEN_ITERATIONS = 3  # reweightings per grid point: enough to rank them
ZOOM_ITERATIONS = 4  # per level, from the weights of the level before
METHOD = ("variable projection: (E, A, B) by Huber-weighted non-negative least squares, "
          "(alpha, beta) by a grid and a zoom")
BOX = {"E": (0.0, None), "A": (0.0, None), "B": (0.0, None), "alpha": EXPONENT_BOX, "beta": EXPONENT_BOX}
SUPPORTS = [s for k in (1, 2) for s in itertools.combinations(range(3), k)]  # all three: _solve3


def _nnls3(gram: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """argmin over c >= 0 of c'Gc - 2 c'r for a stack of 3 x 3 Gram matrices: the best of
    the unconstrained solutions on each support that come out non-negative (the
    objective there is -c'r), in closed form. Where the solution on all three unknowns is
    non-negative it is the optimum, and the smaller supports are tried only elsewhere."""
    with np.errstate(divide="ignore", invalid="ignore"):
        best = _solve3(gram, rhs)
        inside = np.all(best >= 0, axis=1) & np.isfinite(best).all(axis=1)
        if inside.all():
            return best
        rest = ~inside
        best[rest] = _nnls_smaller(gram[rest], rhs[rest])
    return best


def _nnls_smaller(gram: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """The best non-negative solution on one or two of the three unknowns (or none)."""
    best = np.zeros_like(rhs)
    best_value = np.zeros(len(rhs))
    for support in SUPPORTS:
        coef = np.zeros_like(rhs)
        if len(support) == 1:
            (i,) = support
            coef[:, i] = rhs[:, i] / gram[:, i, i]
        else:
            i, j = support
            det = gram[:, i, i] * gram[:, j, j] - gram[:, i, j] ** 2
            coef[:, i] = (gram[:, j, j] * rhs[:, i] - gram[:, i, j] * rhs[:, j]) / det
            coef[:, j] = (gram[:, i, i] * rhs[:, j] - gram[:, i, j] * rhs[:, i]) / det
        value = -(coef * rhs).sum(axis=1)
        better = np.all(coef >= 0, axis=1) & np.isfinite(value) & (value < best_value)
        best[better], best_value[better] = coef[better], value[better]
    return best


def _solve3(gram: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """G c = r by Cramer's rule, batched (a singular G gives inf or NaN, never feasible)."""
    a, b, c, d, e, f, g, h, i = gram.reshape(-1, 9).T
    adjugate = np.stack([e * i - f * h, c * h - b * i, b * f - c * e,
                         f * g - d * i, a * i - c * g, c * d - a * f,
                         d * h - e * g, b * g - a * h, a * e - b * d], axis=1).reshape(-1, 3, 3)
    det = a * adjugate[:, 0, 0] + b * adjugate[:, 1, 0] + c * adjugate[:, 2, 0]
    return (adjugate @ rhs[..., None])[..., 0] / det[:, None]


def _profile(alpha: np.ndarray, beta: np.ndarray, x: np.ndarray, y: np.ndarray, loss: np.ndarray,
             weights: np.ndarray, iterations: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each (alpha, beta): the Huber objective (in units of delta) at the best
    (E, A', B') >= 0, those, and the last weights, with x and y ln N and ln D about their
    references (A = A' N_ref^alpha); the reweighting starts from `weights` (one per run)."""
    columns = np.stack([np.ones((len(alpha), len(x))), np.exp(-alpha[:, None] * x),
                        np.exp(-beta[:, None] * y)], axis=-1) / loss[:, None]
    weights = np.broadcast_to(weights, (len(alpha), len(x)))
    for _ in range(iterations):
        weighted = columns * weights[..., None]
        coef = _nnls3(weighted.transpose(0, 2, 1) @ columns, weighted.sum(axis=1))
        r = (columns @ coef[..., None])[..., 0] - 1.0
        weights = HUBER_DELTA / np.maximum(np.abs(r), HUBER_DELTA)
    slope = np.clip(r, -HUBER_DELTA, HUBER_DELTA)
    return (slope * (r - 0.5 * slope)).sum(axis=1) / HUBER_DELTA, coef, weights


def fit_varpro(ln_n: np.ndarray, ln_d: np.ndarray, loss: np.ndarray) -> np.ndarray:
    """(ln A, ln B, ln E, alpha, beta) of the lowest objective over the box (ln of a
    constant at its bound 0 is -inf); all NaN when no finite optimum exists."""
    with BLAS.limit(limits=1, user_api="blas"):
        return _search(ln_n, ln_d, loss)


def _search(ln_n: np.ndarray, ln_d: np.ndarray, loss: np.ndarray) -> np.ndarray:
    ref = np.array([ln_n.mean(), ln_d.mean()])
    x, y = ln_n - ref[0], ln_d - ref[1]
    low, high = np.log(EXPONENT_BOX)
    axis = np.linspace(low, high, GRID_POINTS)
    la, lb = (grid.ravel() for grid in np.meshgrid(axis, axis, indexing="ij"))
    step = axis[1] - axis[0]
    iterations, weights = SCREEN_ITERATIONS, np.ones(len(loss))
    for _ in range(ZOOM_LEVELS + 1):
        objective, coef, weights = _profile(np.exp(la), np.exp(lb), x, y, loss, weights, iterations)
        if not np.any(np.isfinite(objective)):
            return np.full(5, np.nan)
        best = int(np.nanargmin(objective))
        weights = weights[best]  # the next level's points are near: start from its weights
        centre = np.array([la[best], lb[best]])
        offsets = step * np.linspace(-1.0, 1.0, ZOOM_POINTS)
        la, lb = (np.clip(grid.ravel(), low, high) for grid in np.meshgrid(
            centre[0] + offsets, centre[1] + offsets, indexing="ij"))
        step, iterations = step / 3, ZOOM_ITERATIONS
    alpha, beta = np.exp(centre)
    e, a_ref, b_ref = coef[best]
    with np.errstate(divide="ignore"):
        return np.array([np.log(a_ref) + alpha * ref[0], np.log(b_ref) + beta * ref[1], np.log(e), alpha, beta])
