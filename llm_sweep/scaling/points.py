"""What a scaling-law fit is fitted to: finished runs as points, one point per config,
grouped into compute budgets.

Points. Runs equal in every result-deciding param but the seed are one config: its point
is the mean final val loss of its seeds, and the seeds' spread is the noise. Runs are
grouped into compute budgets by `budget.flops` when set; other runs by their spent
compute rounded to the nearest quarter decade (a factor of ~1.8), the budget's C then
being their geometric mean. Runs that logged no compute are left out.

Order. The points are sorted before anything else happens (configs by budget and size,
seeds by loss), so the fit and every resample of the bootstrap depend on the runs alone,
never on the order a store returned them in.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Hashable, Optional, Sequence

import numpy as np

from llm_sweep.core.errors import DataError
from llm_sweep.scaling.fit_record import Noise

BINS_PER_DECADE = 4
MIN_SHAPES = 3  # a parabola needs three sizes
MIN_BUDGETS = 2  # a line needs two budgets


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
    members: np.ndarray  # indices of its configs, by model size


@dataclass(frozen=True)
class Data:
    """One point per config, grouped by compute."""

    params: np.ndarray
    non_embedding_params: np.ndarray
    tokens: np.ndarray
    compute: np.ndarray
    seed_losses: tuple[np.ndarray, ...]  # each sorted
    budgets: tuple[ComputeGroup, ...]  # by compute
    n_runs: int
    binned: int  # budgets formed by rounding compute, not by budget.flops
    not_best: int  # configs left out: another config of the same size and budget did better

    @property
    def loss(self) -> np.ndarray:
        return np.array([losses.mean() for losses in self.seed_losses])


def _order(point: RunPoint) -> tuple:
    """A total order of points that ignores where they came from (repr: configs of any type)."""
    return (point.budget or 0.0, point.params, point.non_embedding_params, point.tokens, point.compute,
            repr(point.config), point.loss)


def _budget_key(seeds: list[RunPoint]) -> Hashable:
    given = seeds[0].budget
    if given:
        return given
    return "binned", round(np.log10(np.mean([p.compute for p in seeds])) * BINS_PER_DECADE)


def collect(points: Sequence[RunPoint]) -> Data:
    """One point per config; per budget and model size, only the config with the lowest
    mean loss (the learning rate or optimizer a sweep would pick)."""
    configs: dict[Hashable, list[RunPoint]] = defaultdict(list)
    for point in sorted(points, key=_order):
        configs[point.config].append(point)
    best: dict[tuple, list[RunPoint]] = {}
    for seeds in configs.values():
        key = (_budget_key(seeds), seeds[0].params)
        if key not in best or np.mean([p.loss for p in seeds]) < np.mean([p.loss for p in best[key]]):
            best[key] = seeds
    mean_compute = lambda seeds: np.mean([p.compute for p in seeds])
    keys = sorted(best, key=lambda key: (mean_compute(best[key]), key[1]))
    runs = [best[key] for key in keys]
    mean = lambda name: np.array([np.mean([getattr(p, name) for p in seeds]) for seeds in runs])
    compute = mean("compute")
    groups: dict[Hashable, list[int]] = defaultdict(list)
    for i, (budget, _) in enumerate(keys):
        groups[budget].append(i)
    budgets = tuple(sorted((ComputeGroup(float(np.exp(np.log(compute[members]).mean()))
                                         if isinstance(key, tuple) else float(key), np.array(members))
                            for key, members in groups.items()), key=lambda group: group.compute))
    return Data(mean("params"), mean("non_embedding_params"), mean("tokens"), compute,
                tuple(np.sort([p.loss for p in seeds]) for seeds in runs), budgets, len(points),
                sum(isinstance(key, tuple) for key in groups), len(configs) - len(runs))


def check_enough(data: Data) -> None:
    fittable = [b for b in data.budgets if len(np.unique(data.params[b.members])) >= MIN_SHAPES]
    if len(fittable) < MIN_BUDGETS:
        raise DataError(
            f"too few runs for a scaling-law fit: {len(data.seed_losses)} configs in "
            f"{len(data.budgets)} compute budget(s), {len(fittable)} with {MIN_SHAPES}+ model sizes; "
            f"the fit needs {MIN_BUDGETS}+ budgets with {MIN_SHAPES}+ sizes each")


def noise(data: Data) -> Noise:
    return Noise.of_seeds(data.seed_losses)
