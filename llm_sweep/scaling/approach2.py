"""Approach 2: per compute budget, a parabola of loss in ln N; its vertex is N_opt. A
budget whose parabola opens downward, or whose vertex lies outside its runs' range of N,
locates no minimum and is left out of the fits ln N_opt = a ln C + c and ln D_opt =
b ln C + c'.

The bootstrap holds every refit to the same rule: a resample's vertex counts only inside
its budget's run sizes (their range of ln N); one outside, or no vertex at all, is a
failed refit, counted per budget, and a resample in which a budget located in the data
fails has no frontier (a failed refit of a and b) rather than a line through fewer budgets.

Where each vertex sits among its budget's sizes (its position, 0 at the smallest and 1 at
the largest, and its reach, the farthest size from it as a factor of N) is kept: a
parabola is exact only for a symmetric curve sampled symmetrically, and these say how far
a budget's grid is from that (compare.py).
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np

from llm_sweep.scaling.bootstrap import Resample
from llm_sweep.scaling.points import MIN_BUDGETS, MIN_SHAPES, Data
from llm_sweep.scaling.estimates import Constant, IsoflopMinimum, PowerLaws
from llm_sweep.scaling.optimum import optimum, rests_on
from llm_sweep.scaling.rules import RULE, interval, number
from llm_sweep.scaling.surface import constants, surface_optimum


def vertex(ln_n: np.ndarray, loss: np.ndarray) -> tuple[Optional[np.ndarray], float]:
    """The parabola (highest power first) and its minimum's ln N; nan when it has none."""
    if len(np.unique(ln_n)) < MIN_SHAPES:
        return None, np.nan
    coef = np.polyfit(ln_n, loss, 2)
    return coef, (-coef[1] / (2 * coef[0]) if coef[0] > 0 else np.nan)


def budget_minimum(ln_n: np.ndarray, loss: np.ndarray) -> tuple[Optional[np.ndarray], float, str]:
    """Parabola, ln N_opt and why it is not a located minimum ("" when it is)."""
    coef, ln_opt = vertex(ln_n, loss)
    if coef is None:
        return None, np.nan, f"fewer than {MIN_SHAPES} model sizes"
    if np.isnan(ln_opt):
        return coef, np.nan, "the parabola is flat or opens downward: no minimum"
    if not ln_n.min() <= ln_opt <= ln_n.max():
        side = "below the smallest" if ln_opt < ln_n.min() else "above the largest"
        return coef, ln_opt, f"the minimum lies {side} model run: at the edge of the range"
    lowest = ln_n[np.argmin(loss)]
    if lowest in (ln_n.min(), ln_n.max()):
        side = "smallest" if lowest == ln_n.min() else "largest"
        return coef, ln_opt, f"the lowest loss is the {side} model run's: the minimum is not bracketed"
    return coef, ln_opt, ""


def frontier(ln_c: np.ndarray, ln_opt: np.ndarray, per_token: np.ndarray) -> np.ndarray:
    """(a, c, b, c') of ln N_opt = a ln C + c and ln D_opt = b ln C + c'; the budgets with
    a NaN minimum are left out, and with fewer than two left it is NaN."""
    keep = ~np.isnan(ln_opt)
    if keep.sum() < MIN_BUDGETS:
        return np.full(4, np.nan)
    ln_d = ln_c - per_token[0] - per_token[1] * ln_opt
    return np.concatenate([np.polyfit(ln_c[keep], ln_opt[keep], 1), np.polyfit(ln_c[keep], ln_d[keep], 1)])


def refit_minima(data: Data, ln_n: np.ndarray, draws: Sequence[Resample]) -> np.ndarray:
    """(resamples, budgets) of each refit's vertex, NaN where it has none inside its
    budget's run sizes."""
    ranges = [(ln_n[b.members].min(), ln_n[b.members].max()) for b in data.budgets]
    found = np.full((len(draws), len(data.budgets)), np.nan)
    for i, draw in enumerate(draws):
        for j, ((index, losses), (lo, hi)) in enumerate(zip(draw.by_budget(data), ranges)):
            ln_opt = vertex(ln_n[index], losses)[1]
            if lo <= ln_opt <= hi:
                found[i, j] = ln_opt
    return found


def _grid_place(ln_n: np.ndarray, ln_opt: float) -> tuple[Optional[float], Optional[float], Optional[float]]:
    """The vertex's position among the sizes (0 smallest, 1 largest), their span and the
    vertex's reach (both as factors of N); None without a vertex."""
    lo, hi = ln_n.min(), ln_n.max()
    if not np.isfinite(ln_opt) or hi <= lo:
        return None, number(np.exp(hi - lo)), None
    return float((ln_opt - lo) / (hi - lo)), float(np.exp(hi - lo)), float(np.exp(max(hi - ln_opt, ln_opt - lo)))


def _law_truth(law: Optional[np.ndarray], per_token: np.ndarray) -> tuple[dict[str, float], Callable]:
    """The law's own a, b and ln N_opt at a compute (without a law: none, percentiles)."""
    if law is None or np.isnan(law).any():
        return {}, lambda ln_c: None
    found = constants(law, per_token[1])
    return {name: float(found[name]) for name in ("a", "b")}, lambda ln_c: float(surface_optimum(law, ln_c, per_token))


def approach2(data: Data, ln_n: np.ndarray, draws: Sequence[Resample], targets: dict[str, float],
              per_token: np.ndarray, dof: Optional[int] = None, law: Optional[np.ndarray] = None) -> PowerLaws:
    """Approach 2 and its intervals; `law`: the (ln A, ln B, ln E, alpha, beta) the bootstrap
    drew from, whose own optimum each refit's error is measured against (rules.interval)."""
    ln_c = np.log([b.compute for b in data.budgets])
    span = (data.budgets[0].compute, data.budgets[-1].compute)
    minima = [budget_minimum(ln_n[b.members], data.loss[b.members]) for b in data.budgets]
    located = np.array([reason == "" for _, _, reason in minima])
    line = frontier(ln_c, np.where(located, [m[1] for m in minima], np.nan), per_token)
    boot_opt = refit_minima(data, ln_n, draws)
    # A resample fails when a budget located in the data has no vertex in it.
    boot_ok = ~np.isnan(boot_opt[:, located]).any(axis=1) if located.sum() >= MIN_BUDGETS else np.zeros(
        len(draws), bool)
    boot_line = np.array([frontier(ln_c, np.where(located, opts, np.nan), per_token) if ok else np.full(4, np.nan)
                          for opts, ok in zip(boot_opt, boot_ok)]).reshape(len(draws), 4)
    failed = float(1 - boot_ok.mean()) if len(draws) else 1.0
    exponents, truth = _law_truth(law, per_token)
    found = []
    for j, (group, (coef, ln_opt, reason)) in enumerate(zip(data.budgets, minima)):
        budget_failed = int(np.isnan(boot_opt[:, j]).sum())
        at = optimum("", ln_c[j], ln_opt, boot_opt[:, j], per_token, span,
                     budget_failed / max(len(draws), 1), "" if reason == "" else "the minimum is not located", dof,
                     truth(ln_c[j]))
        found.append(IsoflopMinimum(group.compute, int(len(group.members)), at.n_opt, at.d_opt,
                                    at.tokens_per_param,
                                    None if coef is None else number(np.polyval(coef, ln_opt)),
                                    reason == "", reason, *_grid_place(ln_n[group.members], ln_opt),
                                    budget_failed, at.reason))

    def exponent(name: str, col: int) -> Constant:
        ci = interval(boot_line[:, col], float(line[col]), dof, centre=exponents.get(name))
        reason = RULE.judge(name, float(line[col]), ci, failed)
        return Constant(number(line[col]), ci, not reason, reason)

    a, b = exponent("a", 0), exponent("b", 2)
    at_compute = tuple(
        optimum(label, np.log(c), np.log(c) * line[0] + line[1], np.log(c) * boot_line[:, 0] + boot_line[:, 1],
                per_token, span, failed, rests_on(a=a, b=b), dof, truth(np.log(c)))
        for label, c in targets.items()) if np.isfinite(line[0]) else ()
    # N_opt = n_opt_coefficient * C^a, D_opt = d_opt_coefficient * C^b
    return PowerLaws(tuple(found), int(located.sum()), failed, a, b, number(np.exp(line[1])),
                     number(np.exp(line[3])), at_compute, int((~boot_ok).sum()))
