"""What a design is simulated from: the law of a fit.json, the runs of a runs.csv, the noise.
Both files are read through the records that write them (FitResult, RunRow), so a renamed
key or column fails there, not here."""
from __future__ import annotations

import argparse
import json
import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Optional, Sequence

from llm_sweep.core.errors import ConfigError, DataError
from llm_sweep.report.rows import ConfigKey, RunRow, by_seed
from llm_sweep.report.tables import read_csv
from llm_sweep.scaling.design import Design, PlannedRun
from llm_sweep.scaling.fit_record import FitResult, Noise
from llm_sweep.scaling.law import Law


def read_fit(path: Path) -> FitResult:
    try:
        return FitResult.from_json(json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"--law {path}: not a readable fit.json ({exc})") from exc
    except (KeyError, TypeError, AttributeError) as exc:
        raise DataError(f"--law {path}: not a fit.json of report --fit (no {exc})") from exc


def law_from_fit(path: Path) -> Law:
    """Approach 3's law (by variable projection where the fit has it) and the flops per
    token of a fit.json (report --fit), N = all parameters."""
    fit = read_fit(path).total
    surface, flops = fit.law, fit.flops_per_token
    if not surface.fitted:
        raise DataError(f"--law {path}: its Approach-3 law has a constant without a value")
    return Law(E=surface.E.value, A=surface.A.value, B=surface.B.value, alpha=surface.alpha.value,
               beta=surface.beta.value, c=flops.coefficient, k=flops.exponent)


def _finished(path: Path) -> list[RunRow]:
    try:
        return [row for row in read_csv(path) if row.finished]
    except OSError as exc:
        raise DataError(f"--runs {path}: {exc}") from exc


def _study_runs(path: Path) -> list[RunRow]:
    runs = [row for row in _finished(path) if row.flops_budget is not None]
    if not runs:
        raise DataError(f"--runs {path}: no finished runs with a FLOP budget (a runs.csv of report)")
    return runs


def _mean_loss(rows: Sequence[RunRow]) -> float:
    return statistics.fmean(row.val_loss for row in rows)


def _best_configs(path: Path) -> dict[tuple[float, float], list[RunRow]]:
    """Per (budget, size), the seeds of the config the fit keeps: the lowest mean loss."""
    configs: dict[ConfigKey, list[RunRow]] = defaultdict(list)
    for row in _study_runs(path):
        configs[row.config_key].append(row)
    best: dict[tuple[float, float], list[RunRow]] = {}
    for seeds in configs.values():
        at = (seeds[0].flops_budget, float(seeds[0].params))
        if at not in best or _mean_loss(seeds) < _mean_loss(best[at]):
            best[at] = seeds
    return best


def read_design(path: Path, seeds: int) -> Design:
    """The budgets and sizes of a study's runs.csv, each with the seeds it ran (or `seeds`,
    whichever is more)."""
    return Design(tuple(PlannedRun(compute, n, max(seeds, len(rows)))
                        for (compute, n), rows in sorted(_best_configs(path).items())))


def realised_scatter(path: Path, law: Law) -> float:
    """The root mean square of a study's points around the law: its configs' mean losses
    minus L(N, D). The plug-in value (over n, not n - 5): what a bootstrap of those points
    resamples, so a design simulated at it predicts the intervals that study's fit reports."""
    residuals = [_mean_loss(rows) - law.loss(n, statistics.fmean(row.tokens for row in rows))
                 for (_, n), rows in _best_configs(path).items()]
    if len(residuals) <= 5:
        raise DataError(f"--runs {path}: {len(residuals)} configs, too few for a scatter around 5 constants")
    return math.sqrt(sum(r * r for r in residuals) / len(residuals))


def noise_level(given: str, law_path: Optional[Path], runs: Optional[Path], law: Law,
                default: float) -> tuple[float, str]:
    """The noise's sd and where it came from."""
    if given == "scatter":
        if runs is None:
            raise ConfigError("--noise scatter needs --runs RUNS.csv (and its --law)")
        return realised_scatter(runs, law), f"the realised scatter of {runs} around the law"
    if given == "seed":
        pooled = read_fit(law_path).noise.pooled_sd if law_path else None
        if pooled:
            return float(pooled), f"the pooled seed noise of {law_path}"
        return default, "the default seed noise (the committed CPU study's)"
    value = _positive(given)
    if value is None:
        raise ConfigError(f"--noise {given!r}: expected a positive number, seed or scatter")
    return value, "--noise"


def _positive(text: str) -> Optional[float]:
    """`text` as a positive number; None when it is not one."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value > 0 else None


def measured_noise(given: str, law_path: Optional[Path], runs: Optional[Path]) -> tuple[Noise, str]:
    """The seed noise a seed count is planned from, with its degrees of freedom: pooled over
    the configs of --runs run with several seeds, else --law's fit.json, else a --noise number."""
    if runs is not None:
        configs: dict[ConfigKey, list[RunRow]] = defaultdict(list)
        for row in _finished(runs):
            configs[row.config_key].append(row)
        noise = Noise.of_seeds([[statistics.fmean(run.val_loss for run in seed) for seed in by_seed(rows)]
                                for rows in configs.values()])
        if noise.pooled_sd is None:
            raise DataError(f"--runs {runs}: no config was run with several seeds: no seed noise to plan from")
        return noise, f"pooled over the {noise.repeated_configs} repeated config(s) of {runs}"
    if law_path is not None and given == "seed":
        noise = read_fit(law_path).noise
        if noise.pooled_sd is None:
            raise DataError(f"--law {law_path}: its study ran no config with several seeds")
        return noise, f"the pooled seed noise of {law_path}"
    value = _positive(given)
    if value is None:
        raise ConfigError("--gap needs the seed noise: --runs RUNS.csv, --law FIT.json or --noise NUMBER")
    return Noise(0, None, value), "--noise (no degrees of freedom: no interval)"


def positive_floats(text: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}")
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected positive numbers, got {text!r}")
    return values
