"""Parametrizations compared: at each shape run under several (say mup against sp), the best
config of each judged against the other over seeds, with how each side's learning rate was
set; and across widths, each parametrization's best config at each width judged against
the next narrower one (does its loss fall as the model widens?).

How a side's learning rate was set decides whether its comparison is fair: an lr tuned at
that shape (a grid with its best inside it), or one transferred by mup/completep from a base
whose lr and constants were tuned (`model.base_tuned_by` names the study, as the overlay a
tuning sweep writes sets it: conf/mup/base_cpu.yaml). A transferred lr from a base not known
to be tuned, or one untuned sp rate, is not.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Optional, Sequence

from llm_sweep.core.model_config import SP
from llm_sweep.report.configs import ConfigResult, Matchup, best_by, matchup
from llm_sweep.report.rows import RunRow


@dataclass(frozen=True)
class LrSetting:
    """How one side's learning rate was set at its shape, and whether that is fair to it."""

    text: str
    fair: Optional[bool]  # None: these runs cannot tell
    tuned_base: Optional[str] = None  # the study that tuned the base it was transferred from


def lr_setting(config: ConfigResult, rows: Sequence[RunRow]) -> LrSetting:
    """`config`: a parametrization's best config at a shape; `rows`: every run of that
    parametrization at that shape (each lr it ran)."""
    run = config.best
    lrs = sorted({row.lr for row in rows})
    if len(lrs) >= 2:
        text = f"lr tuned at this shape: {run.lr:g}, the best of {len(lrs)} ({lrs[0]:g} to {lrs[-1]:g})"
        if run.lr in (lrs[0], lrs[-1]):
            return LrSetting(text + ", AT THE EDGE of its grid (a better one may lie beyond)", False)
        return LrSetting(text, True)
    if run.parametrization == SP:
        return LrSetting(f"one lr, {run.lr:g}, not tuned at this shape", False)
    if run.base_tuned_by:
        return LrSetting(f"lr {run.lr:g} and base constants transferred from the base tuned by "
                         f"{run.base_tuned_by}", True, run.base_tuned_by)
    return LrSetting(f"lr {run.lr:g} transferred from a base not known to be tuned "
                     "(model.base_tuned_by unset: its constants may be sp's defaults)", None)


@dataclass(frozen=True)
class ParametrizationShape:
    """The best config of each parametrization run at one shape, how each side's lr was set,
    and each pair judged (in the order of their labels)."""

    shape: tuple[str, int, int, int]
    configs: dict[str, ConfigResult]  # parametrization label (RunRow.transfer) -> best config
    settings: dict[str, LrSetting]
    matchups: tuple[Matchup, ...]

    @property
    def fair(self) -> Optional[bool]:
        """False if a side's lr is known to be off its best; None if a side's cannot be told."""
        fair = [setting.fair for setting in self.settings.values()]
        return False if False in fair else (None if None in fair else True)

    @property
    def tuned_bases(self) -> tuple[str, ...]:
        return tuple(sorted({s.tuned_base for s in self.settings.values() if s.tuned_base}))


def shape_text(shape: tuple[str, int, int, int]) -> str:
    arch, n_layer, n_embd, _ = shape
    return f"{arch} {n_layer}x{n_embd}"


def parametrization_shapes(configs: Sequence[ConfigResult], rows: Sequence[RunRow]) -> list[ParametrizationShape]:
    """Every shape run under two or more parametrizations, smallest first."""
    best = best_by(configs, lambda run: (run.shape, run.transfer))
    by_shape: dict[tuple, dict[str, ConfigResult]] = defaultdict(dict)
    for (shape, label), config in best.items():
        by_shape[shape][label] = config
    found = []
    for shape in sorted(by_shape, key=lambda s: (s[0], s[1], s[2])):
        sides = dict(sorted(by_shape[shape].items()))
        if len(sides) < 2:
            continue
        settings = {label: lr_setting(config, [row for row in rows if row.finished and row.shape == shape
                                               and row.transfer == label]) for label, config in sides.items()}
        names = list(sides)
        pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
        found.append(ParametrizationShape(shape, sides, settings, tuple(
            matchup(f"{a} {shape_text(shape)}", sides[a], f"{b} {shape_text(shape)}", sides[b])
            for a, b in pairs)))
    return found


@dataclass(frozen=True)
class WidthTrend:
    """One parametrization's best config at each width (same arch and depth), narrowest
    first, and each width judged against the next narrower one."""

    label: str  # e.g. `mup (base width 64), llama 2 layers`
    configs: tuple[ConfigResult, ...]
    steps: tuple[Matchup, ...]  # steps[i]: configs[i + 1] (wider) against configs[i]

    @property
    def falls_monotonically(self) -> Optional[bool]:
        """True: every wider width decided better; False: some wider width decided worse
        or not better by the seeds; None: a step without a verdict (too few seeds)."""
        if any(step.loss.p_value is None for step in self.steps):
            return None
        return all(step.loss.decided and step.loss.diff < 0 for step in self.steps)


def width_trends(configs: Sequence[ConfigResult]) -> list[WidthTrend]:
    """For each parametrization, arch and depth run at two or more widths: its trend."""
    best = best_by(configs, lambda run: (run.transfer, run.arch, run.n_layer, run.n_embd))
    series: dict[tuple, list[ConfigResult]] = defaultdict(list)
    for (label, arch, n_layer, _), config in best.items():
        series[(label, arch, n_layer)].append(config)
    trends = []
    for (label, arch, n_layer), found in sorted(series.items()):
        if len(found) < 2:
            continue
        found.sort(key=lambda config: config.best.n_embd)
        name = f"{label}, {arch} {n_layer} layers"
        steps = tuple(matchup(f"{label} {shape_text(wide.best.shape)}", wide,
                              f"{label} {shape_text(narrow.best.shape)}", narrow)
                      for narrow, wide in zip(found, found[1:]))
        trends.append(WidthTrend(name, tuple(found), steps))
    return trends
