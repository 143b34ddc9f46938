"""Compute-optimal scaling laws from finished runs (Hoffmann et al., 2022, Approaches 2
and 3): for a compute budget C, the model size N and the tokens D that minimise the loss.

Points. Runs equal in every result-deciding param but the seed are one config: its point
is the mean final val loss of its seeds, and the seeds' spread is the noise. Runs are
grouped into compute budgets by `budget.flops` when set; other runs by their spent
compute rounded to the nearest quarter decade (a factor of ~1.8), the budget's C then
being their geometric mean. Runs that logged no compute are left out.

Compute. C = flops_per_token x D, counted as MFU counts it (6 N plus attention). Where an
optimum N needs its D, flops per token is a power of N fitted to the runs' own logged
compute / tokens: D_opt = C / flops_per_token(N_opt), exactly C / 6N for a plain 6 N count.

Approach 2: per budget, a parabola of loss in ln N; its vertex is N_opt. A budget whose
parabola opens downward, or whose vertex lies outside its runs' range of N, locates no
minimum and is left out of the fits ln N_opt = a ln C + c and ln D_opt = b ln C + c'.

Approach 3: L(N, D) = E + A / N^alpha + B / D^beta, fitted as Chinchilla did: a Huber loss
(delta 1e-3) on ln L - LSE(ln A - alpha ln N, ln B - beta ln D, ln E), L-BFGS-B from the
best starts of their grid. The compute-optimal exponent is a = beta / (alpha + k beta),
with k the exponent of flops per token in N (1 for 6 N: Chinchilla's beta / (alpha + beta)).

Intervals: 95% percentile bootstrap, resampling configs with replacement within each
budget (and the seeds of each repeated config), refitting both approaches. A value counts
as constrained only when its interval is narrower than the value, its refits rarely fail,
and (Approach 3) it does not sit on a bound of the search.
"""
from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass
from typing import Hashable, Optional, Sequence

import numpy as np
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits

from llm_sweep.core.errors import DataError
from llm_sweep.core.references import (SEED_COMPUTE, SEED_NON_EMBEDDING_PARAMS, SEED_PARAMS,
                                       SEED_TOKENS)
from llm_sweep.report.fit_laws import (Bounds, Constant, Estimate, FlopsPerToken, IsoflopMinimum,
                                       LossSurface, Optimum, PowerLaws, ScalingFit)
from llm_sweep.report.fit_result import FitInputs, FitResult, Noise, SeedRun
from llm_sweep.report.runs import RunRow

BINS_PER_DECADE = 4
HUBER_DELTA = 1e-3
RESAMPLES = 200
MIN_SHAPES = 3  # a parabola needs three sizes
MIN_BUDGETS = 2  # a line needs two budgets
MAX_FAILED = 0.1  # share of bootstrap refits that may fail before an estimate is unconstrained
NAMES = ("E", "A", "B", "alpha", "beta")
# ln A, ln B, ln E, alpha, beta: Chinchilla's grid of starts; the best few are refined.
GRID = np.array(list(itertools.product(range(0, 30, 5), range(0, 30, 5), np.arange(-1, 1.5, 0.5),
                                       np.arange(0, 2.5, 0.5), np.arange(0, 2.5, 0.5))), dtype=float)
STARTS = 8
BOUNDS = ((None, None), (None, None), (-5.0, 5.0), (0.0, 3.0), (0.0, 3.0))


@dataclass(frozen=True)
class RunPoint:
    """One finished run: sizes, tokens, compute spent, final val loss."""

    params: float
    non_embedding_params: float
    tokens: float
    compute: float
    loss: float
    budget: Optional[float]  # the FLOP budget it was given, if any
    config: Hashable  # equal for runs that differ only in seed


@dataclass(frozen=True)
class ComputeGroup:
    """The configs run at one compute: one budget.flops, or spent compute in one bin."""

    compute: float
    members: np.ndarray  # indices of its configs


@dataclass(frozen=True)
class Data:
    """One point per config, grouped by compute."""

    params: np.ndarray
    non_embedding_params: np.ndarray
    tokens: np.ndarray
    compute: np.ndarray
    seed_losses: tuple[np.ndarray, ...]
    budgets: tuple[ComputeGroup, ...]  # by compute
    n_runs: int
    binned: int  # budgets formed by rounding compute, not by budget.flops
    not_best: int  # configs left out: another config of the same size and budget did better

    @property
    def loss(self) -> np.ndarray:
        return np.array([losses.mean() for losses in self.seed_losses])


def points_from_runs(rows: Sequence[RunRow]) -> tuple[list[RunPoint], dict[str, int]]:
    """The runs a fit can use, and how many of the others were left out and why. A rerun of
    a config with the same seed is not another sample of the noise: only its first counts."""
    points, skipped, seen = [], defaultdict(int), set()
    for row in rows:
        if not row.finished:
            skipped["not finished"] += 1
        elif row.tokens is None or row.flops is None:
            skipped["no tokens or compute logged"] += 1
        elif (row.config_key, row.seed) in seen:
            skipped["reruns of a config with the same seed"] += 1
        else:
            seen.add((row.config_key, row.seed))
            points.append(RunPoint(row.params, row.non_embedding_params, row.tokens, row.flops,
                                   row.val_loss, row.flops_budget, row.config_key))
    return points, dict(skipped)


def _budget_key(seeds: list[RunPoint]) -> Hashable:
    given = seeds[0].budget
    if given:
        return given
    return "binned", round(np.log10(np.mean([p.compute for p in seeds])) * BINS_PER_DECADE)


def collect(points: Sequence[RunPoint]) -> Data:
    """One point per config; per budget and model size, only the config with the lowest
    mean loss (the learning rate or optimizer a sweep would pick)."""
    configs: dict[Hashable, list[RunPoint]] = defaultdict(list)
    for point in points:
        configs[point.config].append(point)
    best: dict[tuple, list[RunPoint]] = {}
    for seeds in configs.values():
        key = (_budget_key(seeds), seeds[0].params)
        if key not in best or np.mean([p.loss for p in seeds]) < np.mean([p.loss for p in best[key]]):
            best[key] = seeds
    runs = list(best.values())
    mean = lambda key: np.array([np.mean([getattr(p, key) for p in seeds]) for seeds in runs])
    compute = mean("compute")
    groups: dict[Hashable, list[int]] = defaultdict(list)
    for i, (budget, _) in enumerate(best):
        groups[budget].append(i)
    budgets = tuple(sorted((ComputeGroup(float(np.exp(np.log(compute[members]).mean()))
                                         if isinstance(key, tuple) else float(key), np.array(members))
                            for key, members in groups.items()), key=lambda group: group.compute))
    return Data(mean("params"), mean("non_embedding_params"), mean("tokens"), compute,
                tuple(np.array([p.loss for p in seeds]) for seeds in runs), budgets, len(points),
                sum(isinstance(key, tuple) for key in groups), len(configs) - len(runs))


def check_enough(data: Data) -> None:
    fittable = [b for b in data.budgets if len(np.unique(data.params[b.members])) >= MIN_SHAPES]
    if len(fittable) < MIN_BUDGETS:
        raise DataError(
            f"too few runs for a scaling-law fit: {len(data.seed_losses)} configs in "
            f"{len(data.budgets)} compute budget(s), {len(fittable)} with {MIN_SHAPES}+ model sizes; "
            f"the fit needs {MIN_BUDGETS}+ budgets with {MIN_SHAPES}+ sizes each")


def noise(data: Data) -> Noise:
    repeated = [losses for losses in data.seed_losses if len(losses) > 1]
    if not repeated:
        return Noise(0, None, None)
    dof = sum(len(losses) - 1 for losses in repeated)
    pooled = np.sqrt(sum(((losses - losses.mean()) ** 2).sum() for losses in repeated) / dof)
    return Noise(len(repeated), float(max(np.ptp(x) for x in repeated)), float(pooled))


# --- Approach 2 ---------------------------------------------------------------------

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
    """(a, c, b, c') of ln N_opt = a ln C + c and ln D_opt = b ln C + c'."""
    keep = ~np.isnan(ln_opt)
    if keep.sum() < MIN_BUDGETS:
        return np.full(4, np.nan)
    ln_d = ln_c - per_token[0] - per_token[1] * ln_opt
    return np.concatenate([np.polyfit(ln_c[keep], ln_opt[keep], 1), np.polyfit(ln_c[keep], ln_d[keep], 1)])


# --- Approach 3 ---------------------------------------------------------------------

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
    grad = np.array([s0.sum(), s1.sum(), s2.sum(), -s0 @ x, -s1 @ y])
    return huber.sum() / HUBER_DELTA, grad / HUBER_DELTA


def _screen(ln_n: np.ndarray, ln_d: np.ndarray, ln_l: np.ndarray, k: int) -> np.ndarray:
    """The k grid starts with the lowest objective."""
    pred = np.logaddexp(np.logaddexp(GRID[:, :1] - GRID[:, 3:4] * ln_n, GRID[:, 1:2] - GRID[:, 4:5] * ln_d),
                        GRID[:, 2:3])
    r = pred - ln_l
    slope = np.clip(r, -HUBER_DELTA, HUBER_DELTA)
    score = (slope * (r - 0.5 * slope)).sum(axis=1)
    return GRID[np.argsort(score)[:k]]


def fit_loss_surface(ln_n: np.ndarray, ln_d: np.ndarray, loss: np.ndarray,
                     starts: Optional[np.ndarray] = None) -> np.ndarray:
    """(ln A, ln B, ln E, alpha, beta) with the lowest objective over the starts (the
    best of the grid by default). Centring ln N and ln D halves L-BFGS's iterations."""
    ln_l = np.log(loss)
    starts = _screen(ln_n, ln_d, ln_l, STARTS) if starts is None else starts
    shift = np.array([ln_n.mean(), ln_d.mean()])
    centred = starts.copy()
    centred[:, :2] -= starts[:, 3:] * shift
    best = min((minimize(_objective, start, args=(ln_n - shift[0], ln_d - shift[1], ln_l), jac=True,
                         method="L-BFGS-B", bounds=BOUNDS, options={"ftol": 1e-12, "gtol": 1e-8,
                                                                     "maxiter": 500})
                for start in centred), key=lambda result: result.fun)
    theta = best.x.copy()
    theta[:2] += theta[3:] * shift
    return theta


def surface_optimum(theta: np.ndarray, ln_c: float, per_token: np.ndarray) -> np.ndarray:
    """ln N_opt where dL/dN = 0 along C = flops_per_token(N) D; theta may be (..., 5)."""
    a, b, _, alpha, beta = np.moveaxis(np.asarray(theta), -1, 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return ((np.log(alpha) + a - np.log(beta * per_token[1]) - b + beta * (ln_c - per_token[0]))
                / (alpha + beta * per_token[1]))


# --- Both, with the bootstrap -------------------------------------------------------

def _interval(samples: np.ndarray) -> Bounds:
    """The 95% interval; NaN (a failed refit) is left out, an infinite bound is None."""
    samples = samples[~np.isnan(samples)]
    if not len(samples):
        return None, None
    low, high = (float(q) if np.isfinite(q) else None for q in np.percentile(samples, [2.5, 97.5]))
    return low, high


def _constrained(value: float, ci: Bounds, failed: float) -> bool:
    return bool(np.isfinite(value) and None not in ci and ci[1] - ci[0] < abs(value)
                and failed <= MAX_FAILED)


def _number(value: float) -> Optional[float]:
    return float(value) if np.isfinite(value) else None


def _resample(data: Data, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Configs drawn with replacement within each budget, each scored by its seeds drawn
    with replacement: (indices, losses), indices grouped budget by budget."""
    picks = [rng.choice(b.members, len(b.members)) for b in data.budgets]
    index = np.concatenate(picks)
    losses = np.array([rng.choice(data.seed_losses[i], len(data.seed_losses[i])).mean() for i in index])
    return index, losses


def _at_compute(label: str, ln_c: float, ln_n: float, ln_n_samples: np.ndarray, per_token: np.ndarray,
                budget_range: tuple[float, float]) -> Optimum:
    """The optimum at one compute: N, D and tokens per parameter with intervals."""
    tpp = lambda u: np.exp(ln_c - per_token[0] - (per_token[1] + 1) * u)
    lo, hi = budget_range
    with np.errstate(over="ignore"):  # a wild resample far outside: inf, beyond any interval
        n_samples, tpp_samples = np.exp(ln_n_samples), tpp(ln_n_samples)
    outside = outside_factor(float(np.exp(ln_c)), lo, hi)
    return Optimum(label, float(np.exp(ln_c)), Estimate(_number(np.exp(ln_n)), _interval(n_samples)),
                   _number(tpp(ln_n) * np.exp(ln_n)), Estimate(_number(tpp(ln_n)), _interval(tpp_samples)),
                   bool(outside > 1.0), float(outside))


def outside_factor(compute: float, lo: float, hi: float, rel_tol: float = 1e-9) -> float:
    """How many times `compute` lies outside [lo, hi]; exactly 1 inside, the ends included
    to rounding (a compute that went through exp(log(C)) is still its own budget)."""
    factor = max(lo / compute, compute / hi)
    return factor if factor > 1 + rel_tol else 1.0


def _approach2(data: Data, ln_n: np.ndarray, draws: Sequence[tuple[np.ndarray, np.ndarray]],
               targets: dict[str, float], per_token: np.ndarray) -> PowerLaws:
    ln_c = np.log([b.compute for b in data.budgets])
    span = (data.budgets[0].compute, data.budgets[-1].compute)
    minima = [budget_minimum(ln_n[b.members], data.loss[b.members]) for b in data.budgets]
    located = np.array([reason == "" for _, _, reason in minima])
    line = frontier(ln_c, np.where(located, [m[1] for m in minima], np.nan), per_token)
    cuts = np.cumsum([len(b.members) for b in data.budgets])[:-1]
    boot_opt = np.reshape([[vertex(ln_n[i], losses)[1] for i, losses in zip(np.split(index, cuts),
                                                                              np.split(losses, cuts))]
                           for index, losses in draws], (len(draws), len(data.budgets)))
    boot_line = np.reshape([frontier(ln_c, np.where(located, opts, np.nan), per_token) for opts in boot_opt],
                           (len(draws), 4))
    failed = float(np.isnan(boot_line[:, 0]).mean()) if draws else 1.0
    found = []
    for j, (group, (coef, ln_opt, reason)) in enumerate(zip(data.budgets, minima)):
        at = _at_compute("", ln_c[j], ln_opt, boot_opt[:, j], per_token, span)
        found.append(IsoflopMinimum(group.compute, int(len(group.members)), at.n_opt, at.d_opt,
                                    at.tokens_per_param,
                                    None if coef is None else _number(np.polyval(coef, ln_opt)),
                                    reason == "", reason))

    def exponent(col: int) -> Constant:
        ci = _interval(boot_line[:, col])
        return Constant(_number(line[col]), ci, _constrained(line[col], ci, failed))

    at_compute = tuple(
        _at_compute(label, np.log(c), np.log(c) * line[0] + line[1],
                    np.log(c) * boot_line[:, 0] + boot_line[:, 1], per_token, span)
        for label, c in targets.items()) if np.isfinite(line[0]) else ()
    # N_opt = n_opt_coefficient * C^a, D_opt = d_opt_coefficient * C^b
    return PowerLaws(tuple(found), int(located.sum()), failed, exponent(0), exponent(2),
                     _number(np.exp(line[1])), _number(np.exp(line[3])), at_compute)


def _approach3(data: Data, ln_n: np.ndarray, draws: Sequence[tuple[np.ndarray, np.ndarray]],
               targets: dict[str, float], per_token: np.ndarray) -> LossSurface:
    ln_d = np.log(data.tokens)
    span = (data.budgets[0].compute, data.budgets[-1].compute)
    theta = fit_loss_surface(ln_n, ln_d, data.loss)
    # Each resample starts from the full fit: the grid's work is not repeated 200 times.
    boot = np.reshape([fit_loss_surface(ln_n[index], ln_d[index], losses, theta[None])
                       for index, losses in draws], (len(draws), 5))
    k = per_token[1]
    values, samples = {}, {}
    for name, column in (("E", 2), ("A", 0), ("B", 1)):
        values[name], samples[name] = np.exp(theta[column]), np.exp(boot[:, column])
    for name, column in (("alpha", 3), ("beta", 4)):
        values[name], samples[name] = theta[column], boot[:, column]
    values["a"], samples["a"] = theta[4] / (theta[3] + k * theta[4]), boot[:, 4] / (boot[:, 3] + k * boot[:, 4])
    values["b"], samples["b"] = 1 - k * values["a"], 1 - k * samples["a"]
    on_bound = {name: theta[column] in BOUNDS[column] for name, column in (("E", 2), ("alpha", 3), ("beta", 4))}
    constants = {}
    for name, value in values.items():
        ci = _interval(samples[name])
        constants[name] = Constant(_number(value), ci,
                                   _constrained(value, ci, 0.0) and not on_bound.get(name, False))
    at_compute = tuple(
        _at_compute(label, np.log(c), surface_optimum(theta, np.log(c), per_token),
                    surface_optimum(boot, np.log(c), per_token), per_token, span)
        for label, c in targets.items())
    return LossSurface(**constants, at_compute=at_compute, huber_delta=HUBER_DELTA)


def fit_one(data: Data, sizes: np.ndarray, draws: Sequence[tuple[np.ndarray, np.ndarray]],
            targets: dict[str, float]) -> ScalingFit:
    """Approaches 2 and 3 with N = sizes (total or non-embedding parameters)."""
    ln_n = np.log(sizes)
    per_token = np.polyfit(ln_n, np.log(data.compute / data.tokens), 1)[::-1]  # (ln c, k): c N^k
    return ScalingFit(_approach2(data, ln_n, draws, targets, per_token),
                      _approach3(data, ln_n, draws, targets, per_token),
                      FlopsPerToken(float(np.exp(per_token[0])), float(per_token[1])))


def _inputs(data: Data, skipped: Optional[dict[str, int]], resamples: int, seed: int) -> FitInputs:
    span = lambda values: (float(values.min()), float(values.max()))
    return FitInputs(data.n_runs, len(data.seed_losses), len(data.budgets), data.binned, dict(skipped or {}),
                     data.not_best, span(data.compute), span(data.params), span(data.tokens), resamples, seed,
                     SeedRun(SEED_PARAMS, SEED_NON_EMBEDDING_PARAMS, SEED_TOKENS, SEED_COMPUTE))


def fit_scaling(points: Sequence[RunPoint], resamples: int = RESAMPLES, seed: int = 0,
                skipped: Optional[dict[str, int]] = None) -> FitResult:
    """Both approaches with N = total and N = non-embedding params (fit.json: its to_json())."""
    data = collect(points)
    check_enough(data)
    rng = np.random.default_rng(seed)
    draws = [_resample(data, rng) for _ in range(resamples)]
    targets = {"largest budget": data.budgets[-1].compute, "seed run": SEED_COMPUTE}
    # Thousands of 5-variable problems: BLAS threads only add start-up and contention
    # (ten times slower on a busy 2-core machine).
    with threadpool_limits(limits=1, user_api="blas"):
        total = fit_one(data, data.params, draws, targets)
        non_embedding = fit_one(data, data.non_embedding_params, draws, targets)
    return FitResult(data.n_runs, noise(data), _inputs(data, skipped, resamples, seed), total, non_embedding)
