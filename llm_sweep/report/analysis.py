"""The numbers behind the report's conclusions, as plain data.

Runs are compared at one budget (the one most finished runs share): a different
budget is a different experiment. Runs equal in every result-deciding param but the
seed are one config; a config scores the mean final val loss of its seeds. Where a
shape or optimizer was run with several configs (say, learning rates), it scores its
best config, as a sweep would pick it.

Noise: the largest max-min spread of final val loss over the seeds of any repeated
config. A difference no larger than that is reported as within the noise.
"""
from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Callable, Hashable, Iterable, Optional, Sequence

from llm_sweep.report.runs import RunRow

REFERENCE_PRESET = "noam"  # the seed's baseline shape


@dataclass(frozen=True)
class ConfigResult:
    """The finished runs of one config (its seeds), best first."""

    runs: tuple[RunRow, ...]

    @property
    def best(self) -> RunRow:
        return self.runs[0]

    @property
    def loss(self) -> float:
        return statistics.fmean(run.val_loss for run in self.runs)

    @property
    def spread(self) -> float:
        return self.runs[-1].val_loss - self.runs[0].val_loss

    @property
    def label(self) -> str:
        seeds = f", mean of {len(self.runs)} seeds" if len(self.runs) > 1 else ""
        return f"{self.best.name}{seeds}"


@dataclass(frozen=True)
class Noise:
    spread: float  # max - min final val loss over the seeds of `config`
    config: ConfigResult


@dataclass(frozen=True)
class ShapeSeries:
    """Best config per shape, relative to the reference shape (which starts both series).

    wider: same arch and n_layer, larger n_embd. deeper: same arch and n_embd, more layers.
    other: everything else (a head count or arch that differs, or both dimensions changed).
    """

    reference: ConfigResult
    wider: tuple[ConfigResult, ...]
    deeper: tuple[ConfigResult, ...]
    other: tuple[ConfigResult, ...]


@dataclass(frozen=True)
class OptimizerScale:
    """The best config of each optimizer at one model size."""

    params: int
    by_optimizer: dict[str, ConfigResult]


@dataclass(frozen=True)
class Findings:
    budget: Optional[str]  # the budget the comparisons hold fixed
    compared: tuple[RunRow, ...]  # the finished runs at that budget
    noise: Optional[Noise]
    shapes: Optional[ShapeSeries]
    lowest: Optional[RunRow]  # the lowest final val loss, where tokens/param is marked
    optimizers: tuple[OptimizerScale, ...]


def analyse(rows: Sequence[RunRow]) -> Findings:
    budget = comparison_budget(rows)
    compared = tuple(row for row in rows if row.finished and row.budget == budget)
    configs = group_configs(compared)
    return Findings(budget, compared, seed_noise(configs), shape_series(configs),
                    lowest_loss(compared), tuple(optimizer_scales(configs)))


def comparison_budget(rows: Sequence[RunRow]) -> Optional[str]:
    counts = Counter(row.budget for row in rows if row.finished)
    return counts.most_common(1)[0][0] if counts else None


def group_configs(rows: Iterable[RunRow]) -> list[ConfigResult]:
    """Finished runs grouped by config, each group sorted by final val loss."""
    groups: dict[tuple, list[RunRow]] = defaultdict(list)
    for row in rows:
        if row.finished:
            groups[row.config_key].append(row)
    return [ConfigResult(tuple(sorted(runs, key=lambda r: r.val_loss))) for runs in groups.values()]


def seed_noise(configs: Sequence[ConfigResult]) -> Optional[Noise]:
    repeated = [config for config in configs if len(config.runs) > 1]
    if not repeated:
        return None
    widest = max(repeated, key=lambda config: config.spread)
    return Noise(widest.spread, widest)


def best_by(configs: Iterable[ConfigResult], key: Callable[[RunRow], Hashable]
            ) -> dict[Hashable, ConfigResult]:
    """The config with the lowest mean loss for each value of key(its best run)."""
    best: dict[Hashable, ConfigResult] = {}
    for config in configs:
        k = key(config.best)
        if k not in best or config.loss < best[k].loss:
            best[k] = config
    return best


def shape_series(configs: Sequence[ConfigResult]) -> Optional[ShapeSeries]:
    """Classify each shape's best config against the reference: the preset noam when
    present, else the smallest model."""
    shapes = best_by(configs, lambda run: run.shape)
    if not shapes:
        return None
    noam = [config for config in shapes.values() if config.best.preset == REFERENCE_PRESET]
    reference = min(noam or shapes.values(), key=lambda config: config.best.params)
    arch, n_layer, n_embd, _ = reference.best.shape
    wider, deeper, other = [], [], []
    for config in shapes.values():
        run = config.best
        if config is reference:
            continue
        if run.arch == arch and run.n_layer == n_layer and run.n_embd > n_embd:
            wider.append(config)
        elif run.arch == arch and run.n_embd == n_embd and run.n_layer > n_layer:
            deeper.append(config)
        else:
            other.append(config)
    return ShapeSeries(reference, _by_size(wider), _by_size(deeper), _by_size(other))


def _by_size(configs: list[ConfigResult]) -> tuple[ConfigResult, ...]:
    return tuple(sorted(configs, key=lambda config: config.best.params))


def optimizer_scales(configs: Sequence[ConfigResult]) -> list[OptimizerScale]:
    """Per model size (parameter count), the best config of each optimizer run at it."""
    best = best_by(configs, lambda run: (run.params, run.optimizer))
    scales: dict[int, dict[str, ConfigResult]] = defaultdict(dict)
    for (params, optimizer), config in best.items():
        scales[params][optimizer] = config
    return [OptimizerScale(params, dict(sorted(scales[params].items()))) for params in sorted(scales)]


def lowest_loss(rows: Sequence[RunRow]) -> Optional[RunRow]:
    finished = [row for row in rows if row.finished and row.tokens_per_param is not None]
    return min(finished, key=lambda row: row.val_loss) if finished else None


def within_noise(difference: float, noise: Optional[Noise]) -> Optional[bool]:
    """True or False against the measured spread; None when no config was repeated."""
    return None if noise is None else abs(difference) <= noise.spread
