"""What a design is simulated from: the law of a fit.json, the runs of a runs.csv, the noise."""
from __future__ import annotations

import csv
import json
import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Optional

from llm_sweep.core.errors import ConfigError, DataError
from llm_sweep.scaling.design import Design, PlannedRun
from llm_sweep.scaling.law import Law

FLOPS_SUFFIX = " FLOPs"  # how runs.csv writes a FLOP budget: "6.25e+12 FLOPs"


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"--law {path}: not a readable fit.json ({exc})") from exc


def law_from_fit(path: Path) -> Law:
    """Approach 3's law (by variable projection where the fit has it) and the flops per
    token of a fit.json (report --fit)."""
    fit = _read_json(path)
    try:
        surface, flops = fit.get("approach3_varpro") or fit["approach3"], fit["flops_per_token"]
        return Law(surface["E"], surface["A"], surface["B"], surface["alpha"], surface["beta"],
                       flops["coefficient"], flops["exponent"])
    except (KeyError, TypeError) as exc:
        raise DataError(f"--law {path}: no Approach-3 law in it (missing {exc})") from exc


def _study_runs(path: Path) -> list[dict]:
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise DataError(f"--runs {path}: {exc}") from exc
    runs = [row for row in rows if row.get("status") == "FINISHED" and row.get("val_loss")
            and str(row.get("budget", "")).endswith(FLOPS_SUFFIX)]
    if not runs:
        raise DataError(f"--runs {path}: no finished runs with a FLOP budget (a runs.csv of report)")
    return runs


def _best_configs(path: Path) -> dict[tuple[float, float], list[dict]]:
    """Per (budget, size), the seeds of the config the fit keeps: the lowest mean loss."""
    configs: dict[tuple, list[dict]] = defaultdict(list)
    for row in _study_runs(path):
        compute = float(row["budget"][: -len(FLOPS_SUFFIX)])
        configs[(compute, float(row["params"]), row["lr"], row["optimizer"])].append(row)
    best: dict[tuple[float, float], list[dict]] = {}
    for (compute, n, *_), seeds in configs.items():
        loss = statistics.fmean(float(r["val_loss"]) for r in seeds)
        if (compute, n) not in best or loss < statistics.fmean(float(r["val_loss"]) for r in best[(compute, n)]):
            best[(compute, n)] = seeds
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
    residuals = [statistics.fmean(float(r["val_loss"]) for r in rows)
                 - law.loss(n, statistics.fmean(float(r["tokens"]) for r in rows))
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
        pooled = _read_json(law_path).get("noise", {}).get("pooled_sd") if law_path else None
        if pooled:
            return float(pooled), f"the pooled seed noise of {law_path}"
        return default, "the default seed noise (the committed CPU study's)"
    try:
        value = float(given)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigError(f"--noise {given!r}: expected a positive number, seed or scatter")
    return value, "--noise"
