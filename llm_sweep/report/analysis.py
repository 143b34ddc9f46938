"""The numbers behind the report's conclusions, as plain data.

Runs are compared at one budget (the one most finished runs share): a different
budget is a different experiment. Runs equal in every result-deciding param but the
seed are one config; a config scores the mean final val loss of its seeds. Where a
shape or optimizer was run with several configs (say, learning rates), it scores its
best config, as a sweep would pick it.

Verdicts: each comparison (best wider vs best deeper shape, each wider and deeper shape vs
the reference shape, the optimizers at each size, the parametrizations at each shape and
each parametrization's widths: report/parametrizations.py) is judged over the seeds of its two
configs on each final metric (llm_sweep.scaling.verdicts), one value per seed: reruns of
one seed are averaged, as they are not independent draws.

Noise: the seeds' sd of final val loss pooled over every repeated config, with its
interval and degrees of freedom (llm_sweep.scaling.fit_record.Noise), and the largest
max-min spread, the yardstick for how close to the lowest loss another config lies.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Optional, Sequence

from llm_sweep.core.run_record import FINAL_VAL_LOSS
from llm_sweep.report.configs import ConfigResult, Matchup, best_by, group_configs, matchup
from llm_sweep.report.learning_rates import (LrCurve, LrFairness, Transfer, lr_curves, lr_fairness,
                                             transfers)
from llm_sweep.report.parametrizations import (ParametrizationShape, WidthTrend, parametrization_shapes,
                                               width_trends)
from llm_sweep.report.rows import RunRow
from llm_sweep.report.tables import si
from llm_sweep.scaling.fit_record import Noise
from llm_sweep.scaling.verdicts import Comparison

REFERENCE_PRESET = "noam"  # the seed's baseline shape
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
    """The best config of each optimizer at one model size, and each pair of them judged
    (in the order of their names)."""

    params: int
    by_optimizer: dict[str, ConfigResult]
    matchups: tuple[Matchup, ...] = ()


@dataclass(frozen=True)
class Findings:
    budget: Optional[str]  # the budget the comparisons hold fixed
    compared: tuple[RunRow, ...]  # the finished runs at that budget
    noise: Optional[Noise]
    shapes: Optional[ShapeSeries]
    lowest: Optional[RunRow]  # the lowest final val loss, where tokens/param is marked
    optimizers: tuple[OptimizerScale, ...]
    wider_vs_deeper: Optional[Matchup] = None  # the best wider shape vs the best deeper one
    against_reference: tuple[Matchup, ...] = ()  # each wider, then each deeper shape vs the reference
    shape_lrs: Optional[LrFairness] = None  # how the compared shapes' learning rates were set
    lr_curves: tuple[LrCurve, ...] = ()  # each shape run at several learning rates
    lr_transfers: tuple[Transfer, ...] = ()  # their optima across widths and depths
    parametrizations: tuple[ParametrizationShape, ...] = ()  # shapes run under several
    width_trends: tuple[WidthTrend, ...] = ()  # each parametrization's loss across widths

    @property
    def comparisons(self) -> tuple[Comparison, ...]:
        """Every comparison of the report, in the order summary.md shows them."""
        matchups = [*([self.wider_vs_deeper] if self.wider_vs_deeper else []), *self.against_reference,
                    *(m for scale in self.optimizers for m in scale.matchups),
                    *(m for shape in self.parametrizations for m in shape.matchups),
                    *(m for trend in self.width_trends for m in trend.steps)]
        return tuple(c for m in matchups for c in m.comparisons)


def analyse(rows: Sequence[RunRow]) -> Findings:
    budget = comparison_budget(rows)
    compared = tuple(row for row in rows if row.finished and row.budget == budget)
    configs = group_configs(compared)
    shapes = shape_series(configs)
    curves = lr_curves(compared)
    # Widths judged step by step only in a study of parametrizations (elsewhere, say at one
    # FLOP budget, a wider shape is not expected to be lower).
    by_parametrization = parametrization_shapes(configs, compared)
    trends = width_trends(configs) if by_parametrization else []
    return Findings(budget, compared, seed_noise(configs), shapes, lowest_loss(compared),
                    tuple(optimizer_scales(configs)), wider_vs_deeper(shapes),
                    against_reference(shapes), shape_learning_rates(shapes, compared),
                    tuple(curves), tuple(transfers(curves)), tuple(by_parametrization), tuple(trends))


def comparison_budget(rows: Sequence[RunRow]) -> Optional[str]:
    counts = Counter(row.budget for row in rows if row.finished)
    return counts.most_common(1)[0][0] if counts else None


def seed_noise(configs: Sequence[ConfigResult]) -> Optional[Noise]:
    """The seeds' noise in final val loss, pooled over every config run with several."""
    noise = Noise.of_seeds([config.seed_values(FINAL_VAL_LOSS) for config in configs])
    return noise if noise.repeated_configs else None


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


def shape_learning_rates(shapes: Optional[ShapeSeries], rows: Sequence[RunRow]) -> Optional[LrFairness]:
    """How the learning rate was set for the shapes the report compares (every lr each ran
    under the parametrization of its best config: another one's grid tunes nothing for it)."""
    if shapes is None:
        return None
    compared = {(config.best.shape, config.best.transfer): shape_label(config, role) for role, series in (
        ("reference", (shapes.reference,)), ("wider", shapes.wider), ("deeper", shapes.deeper))
        for config in series}
    by_shape: dict[str, list[RunRow]] = defaultdict(list)
    for row in rows:
        if (row.shape, row.transfer) in compared:
            by_shape[compared[(row.shape, row.transfer)]].append(row)
    return lr_fairness(by_shape)


def _by_size(configs: list[ConfigResult]) -> tuple[ConfigResult, ...]:
    return tuple(sorted(configs, key=lambda config: config.best.params))


def shape_label(config: ConfigResult, role: str) -> str:
    run = config.best
    return f"{run.preset} {run.n_layer}x{run.n_embd} ({role})"


def wider_vs_deeper(shapes: Optional[ShapeSeries]) -> Optional[Matchup]:
    """The best (lowest mean loss) wider shape against the best deeper one."""
    if shapes is None or not shapes.wider or not shapes.deeper:
        return None
    wider = min(shapes.wider, key=lambda config: config.loss)
    deeper = min(shapes.deeper, key=lambda config: config.loss)
    return matchup(shape_label(wider, "wider"), wider, shape_label(deeper, "deeper"), deeper)


def against_reference(shapes: Optional[ShapeSeries]) -> tuple[Matchup, ...]:
    """Each wider, then each deeper shape against the reference shape of the same sweep
    (a config with seeds of its own, unlike a published number)."""
    if shapes is None:
        return ()
    reference = shape_label(shapes.reference, "reference")
    return tuple(matchup(shape_label(config, role), config, reference, shapes.reference)
                 for role, series in (("wider", shapes.wider), ("deeper", shapes.deeper))
                 for config in series)


def optimizer_scales(configs: Sequence[ConfigResult]) -> list[OptimizerScale]:
    """Per model size (parameter count), the best config of each optimizer run at it."""
    best = best_by(configs, lambda run: (run.params, run.optimizer))
    scales: dict[int, dict[str, ConfigResult]] = defaultdict(dict)
    for (params, optimizer), config in best.items():
        scales[params][optimizer] = config
    return [_judged_scale(params, dict(sorted(scales[params].items()))) for params in sorted(scales)]


def _judged_scale(params: int, by_optimizer: dict[str, ConfigResult]) -> OptimizerScale:
    names = list(by_optimizer)
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    return OptimizerScale(params, by_optimizer, tuple(
        matchup(f"{a} ({si(params)} params)", by_optimizer[a], f"{b} ({si(params)} params)", by_optimizer[b])
        for a, b in pairs))


def lowest_loss(rows: Sequence[RunRow]) -> Optional[RunRow]:
    finished = [row for row in rows if row.finished and row.tokens_per_param is not None]
    return min(finished, key=lambda row: row.val_loss) if finished else None
