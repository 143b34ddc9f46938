"""A config as the reports see it: its finished runs (its seeds), their values per seed,
and two configs judged against each other on every final metric (llm_sweep.scaling.verdicts).
A config's runs are equal in every result-deciding param but the seed; it scores the mean
final val loss of its seeds, and where a shape (or optimizer, or parametrization) ran several
configs it scores its best one, as a sweep would pick it."""
from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Hashable, Iterable, Optional

from llm_sweep.core.run_record import FINAL_VAL_ACC, FINAL_VAL_LOSS, FINAL_VAL_PPL
from llm_sweep.report.rows import RunRow, by_seed
from llm_sweep.scaling.verdicts import Comparison, compare

# The final metrics a comparison is judged on; val loss first, the one summary.md quotes.
METRICS: dict[str, Callable[[RunRow], Optional[float]]] = {
    FINAL_VAL_LOSS: lambda run: run.val_loss, FINAL_VAL_PPL: lambda run: run.val_ppl,
    FINAL_VAL_ACC: lambda run: run.val_acc}


@dataclass(frozen=True)
class ConfigResult:
    """The finished runs of one config (its seeds), best first."""

    runs: tuple[RunRow, ...]

    @property
    def best(self) -> RunRow:
        return self.runs[0]

    @property
    def loss(self) -> float:
        return statistics.fmean(self.seed_values(FINAL_VAL_LOSS))

    @property
    def spread(self) -> float:
        return self.runs[-1].val_loss - self.runs[0].val_loss

    @property
    def n_seeds(self) -> int:
        return len(self.seed_values(FINAL_VAL_LOSS))

    @property
    def label(self) -> str:
        seeds = f", mean of {self.n_seeds} seeds" if self.n_seeds > 1 else ""
        return f"{self.best.name}{seeds}"

    def seed_values(self, metric: str) -> list[float]:
        """One value of `metric` per seed that logged it: the runs of one seed averaged (a
        rerun is not a new draw); a run without a seed counts alone."""
        values = ([v for v in map(METRICS[metric], runs) if v is not None] for runs in by_seed(self.runs))
        return [statistics.fmean(seed) for seed in values if seed]


@dataclass(frozen=True)
class Matchup:
    """Two configs a conclusion compares, judged on each final metric both logged."""

    a: ConfigResult
    b: ConfigResult
    comparisons: tuple[Comparison, ...]  # final val loss first

    @property
    def loss(self) -> Comparison:
        return self.comparisons[0]


def matchup(a_label: str, a: ConfigResult, b_label: str, b: ConfigResult) -> Matchup:
    comparisons = []
    for metric in METRICS:
        a_values, b_values = a.seed_values(metric), b.seed_values(metric)
        if a_values and b_values:
            comparisons.append(compare(metric, a_label, a_values, b_label, b_values))
    return Matchup(a, b, tuple(comparisons))


def group_configs(rows: Iterable[RunRow]) -> list[ConfigResult]:
    """Finished runs grouped by config, each group sorted by final val loss."""
    groups: dict[tuple, list[RunRow]] = defaultdict(list)
    for row in rows:
        if row.finished:
            groups[row.config_key].append(row)
    return [ConfigResult(tuple(sorted(runs, key=lambda r: r.val_loss))) for runs in groups.values()]


def best_by(configs: Iterable[ConfigResult], key: Callable[[RunRow], Hashable]
            ) -> dict[Hashable, ConfigResult]:
    """The config with the lowest mean loss for each value of key(its best run)."""
    best: dict[Hashable, ConfigResult] = {}
    for config in configs:
        k = key(config.best)
        if k not in best or config.loss < best[k].loss:
            best[k] = config
    return best


