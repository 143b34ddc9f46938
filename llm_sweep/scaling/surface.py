"""Approach 3: L(N, D) = E + A / N^alpha + B / D^beta, its compute-optimal frontier, and
what its bootstrap says, whichever search found it (lbfgs.py, varpro.py).

The compute-optimal exponent is a = beta / (alpha + k beta), with k the exponent of
flops per token in N (1 for 6 N: Chinchilla's beta / (alpha + beta)).

Bounds. A parameter on a bound of its search (within BOUND_TOLERANCE) constrains nothing:
the optimum is the box's, not the data's, and the other parameters moved to make up for
it. Such a fit's values are all reported as not constrained, naming the parameter and
the bound; so are they when more than MAX_FAILED of the refits put a parameter on a bound.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from llm_sweep.scaling.estimates import PARAMETERS, Bounds, Constant, LossSurface, SurfaceSearch
from llm_sweep.scaling.lbfgs import HUBER_DELTA
from llm_sweep.scaling.optimum import optimum, rests_on
from llm_sweep.scaling.rules import EXPONENTS, RULE, interval, number

# Exponents: absolute; a positive bound of E, A or B: relative; a bound of 0: a term that
# adds less than this share of the lowest loss anywhere in the runs is absent.
BOUND_TOLERANCE = 1e-3


def surface_optimum(theta: np.ndarray, ln_c: float, per_token: np.ndarray) -> np.ndarray:
    """ln N_opt where dL/dN = 0 along C = flops_per_token(N) D; theta may be (..., 5)."""
    a, b, _, alpha, beta = np.moveaxis(np.asarray(theta), -1, 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return ((np.log(alpha) + a - np.log(beta * per_token[1]) - b + beta * (ln_c - per_token[0]))
                / (alpha + beta * per_token[1]))


def parameters(theta: np.ndarray) -> np.ndarray:
    """(..., 5) of (ln A, ln B, ln E, alpha, beta) as (..., 5) of (E, A, B, alpha, beta)."""
    theta = np.asarray(theta)
    return np.concatenate([np.exp(theta[..., [2, 0, 1]]), theta[..., 3:]], axis=-1)


def bound_hits(values: np.ndarray, box: dict[str, Bounds], ln_n: np.ndarray, ln_d: np.ndarray,
               loss: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For (..., 5) of (E, A, B, alpha, beta): which sit on their lower and upper bounds."""
    values = np.asarray(values, dtype=float)
    # The largest a term gets over the runs, for a bound of 0: E, A / N_min^alpha, B / D_min^beta.
    with np.errstate(over="ignore", invalid="ignore"):
        largest = values[..., :3] * np.stack([np.ones(values.shape[:-1]),
                                              np.exp(-values[..., 3] * ln_n.min()),
                                              np.exp(-values[..., 4] * ln_d.min())], axis=-1)
    low, high = np.zeros(values.shape, bool), np.zeros(values.shape, bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        for j, name in enumerate(PARAMETERS):
            lo, hi = box.get(name, (None, None))
            x = values[..., j]
            if j >= 3:  # exponents
                low[..., j] = lo is not None and x <= lo + BOUND_TOLERANCE
                high[..., j] = hi is not None and x >= hi - BOUND_TOLERANCE
                continue
            if lo is not None:
                low[..., j] = (largest[..., j] <= BOUND_TOLERANCE * loss.min() if lo == 0
                               else np.log(x) <= np.log(lo) + BOUND_TOLERANCE)
            if hi is not None:
                high[..., j] = np.log(x) >= np.log(hi) - BOUND_TOLERANCE
    return low, high


def _blocked(at_bound: dict[str, str], shares: dict[str, float], box: dict[str, Bounds]) -> str:
    """Why nothing of this fit is constrained: a parameter on a bound ("" when none is)."""
    if at_bound:
        return "; ".join(f"{name} on its {side} bound ({box[name][0 if side == 'lower' else 1]:.3g})"
                         for name, side in at_bound.items())
    crowded = {name: share for name, share in shares.items() if share > RULE.max_failed}
    return "; ".join(f"{name} on a bound in {share:.0%} of the refits" for name, share in crowded.items())


def constants(theta: np.ndarray, k: float) -> dict[str, np.ndarray]:
    """E, A, B, alpha, beta, a, b of (..., 5) thetas (a = beta / (alpha + k beta), b = 1 - k a)."""
    values = parameters(theta)
    found = {name: values[..., j] for j, name in enumerate(PARAMETERS)}
    with np.errstate(divide="ignore", invalid="ignore"):
        found["a"] = found["beta"] / (found["alpha"] + k * found["beta"])
    found["b"] = 1 - k * found["a"]
    return found


def _inside(ci: Bounds, bounds: Bounds) -> Bounds:
    """An interval cut to the values the search allows (a reflected interval can cross them)."""
    low, high = ci
    lo, hi = bounds
    if lo is not None and low is not None:
        low = max(low, lo)
    if hi is not None and high is not None:
        high = min(high, hi)
    return low, high


def loss_surface(method: str, box: dict[str, Bounds], theta: np.ndarray, boot: np.ndarray,
                 data: tuple[np.ndarray, np.ndarray, np.ndarray], targets: dict[str, float],
                 per_token: np.ndarray, budget_range: tuple[float, float],
                 objective: Optional[float] = None, dof: Optional[int] = None) -> LossSurface:
    """The LossSurface of a full fit `theta` and its refits `boot` (rows of NaN: failed),
    both (ln A, ln B, ln E, alpha, beta); `data`: ln N, ln D and the loss fitted."""
    ok = ~np.isnan(boot).any(axis=1)
    failed = float(1 - ok.mean()) if len(boot) else 1.0
    converged = bool(not np.isnan(theta).any() and np.all(np.isfinite(theta[3:])))  # ln 0 = -inf: on a bound
    low, high = bound_hits(parameters(theta), box, *data)
    at_bound = {name: "lower" if low[j] else "upper" for j, name in enumerate(PARAMETERS) if low[j] or high[j]}
    boot_low, boot_high = bound_hits(parameters(boot[ok]), box, *data)
    shares = {name: float((boot_low[:, j] | boot_high[:, j]).mean()) if ok.any() else 0.0
              for j, name in enumerate(PARAMETERS)}
    blocked = "the fit did not converge" if not converged else _blocked(at_bound, shares, box)
    values, samples = constants(theta, per_token[1]), constants(boot[ok], per_token[1])
    found = {}
    for name, value in values.items():
        ci = _inside(interval(samples[name], float(value), dof, log=name not in EXPONENTS, centre=float(value)),
                     box.get(name, (None, None)))
        reason = RULE.judge(name, float(value), ci, failed, blocked)
        found[name] = Constant(number(value), ci, not reason, reason)
    exponents = rests_on(alpha=found["alpha"], beta=found["beta"], a=found["a"])
    at_compute = tuple(
        optimum(label, np.log(c), surface_optimum(theta, np.log(c), per_token),
                np.where(ok, surface_optimum(boot, np.log(c), per_token), np.nan), per_token, budget_range,
                failed, blocked or exponents, dof)
        for label, c in targets.items())
    search = SurfaceSearch(method, dict(box), at_bound, shares, int((~ok).sum()), converged,
                           None if objective is None else number(objective))
    refits = tuple(tuple(float(x) for x in row) for row in parameters(boot[ok]) if np.isfinite(row).all())
    return LossSurface(**found, at_compute=at_compute, huber_delta=HUBER_DELTA, search=search, refits=refits)
