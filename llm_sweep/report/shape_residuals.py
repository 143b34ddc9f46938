"""The shape effect beyond N and D.

"Go wider" mixes two things: a wide, shallow model may run more tokens in a time budget
(throughput), and at equal parameters and tokens it may or may not reach a lower loss
(shape). A loss surface L(N, D) fitted to an iso-FLOP study of the same family predicts
each run's loss from its parameters N and tokens D alone; what is left, measured minus
predicted, is the part that N and D do not explain: the shape's own effect (plus noise,
which the seeds measure). Kaplan et al. 2020 found it small at fixed N; this answers it
for the user's runs.

Between two shapes the gap in loss splits exactly into three parts:
  from parameters and from tokens: the change of L(N, D) as N, then D, moves from one
    shape's value to the other's (the mean of both orders, so the two parts add up to
    L(N_a, D_a) - L(N_b, D_b) with no order chosen);
  from shape: the difference of the two residuals.
Under a time budget the tokens part is the throughput's share of the gap.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Optional, Protocol

import numpy as np

from llm_sweep.report.analysis import Findings, shape_label
from llm_sweep.report.configs import ConfigResult
from llm_sweep.report.rows import by_seed
from llm_sweep.scaling.bootstrap import residual_dof
from llm_sweep.scaling.verdicts import SHAPE_RESIDUAL, Comparison, ExtraError, compare, mean_interval


class LossLaw(Protocol):
    def loss(self, n: float, d: float) -> float: ...

    def refit_losses(self, n: float, d: float) -> np.ndarray: ...


@dataclass(frozen=True)
class ShapeResidual:
    """One config (its seeds) against the law: N, mean tokens, mean measured loss, the
    loss the law predicts at (N, mean tokens), and each seed's residual."""

    label: str
    params: int
    tokens: float
    measured: float
    predicted: float
    residuals: tuple[float, ...]  # per seed: measured - L(N, that seed's tokens)
    inside: bool  # N and D inside the ranges the law was fitted on

    @property
    def residual(self) -> float:
        """Mean measured minus the prediction at the mean tokens: the parts of `GapSplit`
        add up to the measured gap exactly with this one."""
        return self.measured - self.predicted

    @property
    def interval(self) -> Optional[tuple[float, float]]:
        """95% Student-t interval of the mean residual over the seeds (None with one): the
        seeds' uncertainty only; a comparison of two shapes adds the law's (split_gap)."""
        return mean_interval(self.residuals)


@dataclass(frozen=True)
class GapSplit:
    """The measured gap between two shapes (a minus b; negative: a is lower), its parts,
    and the verdict over seeds on the shape part."""

    a: ShapeResidual
    b: ShapeResidual
    from_params: float
    from_tokens: float
    shape: Comparison  # side a's residuals against side b's

    @property
    def gap(self) -> float:
        return self.a.measured - self.b.measured

    @property
    def from_shape(self) -> float:
        return self.a.residual - self.b.residual


@dataclass(frozen=True)
class FitRange:
    """The parameters and tokens a law was fitted on (inclusive)."""

    params: tuple[float, float]
    tokens: tuple[float, float]

    def holds(self, params: float, tokens: float) -> bool:
        return (self.params[0] <= params <= self.params[1]) and (self.tokens[0] <= tokens <= self.tokens[1])


def residual_of(config: ConfigResult, label: str, law: LossLaw, fitted: FitRange) -> ShapeResidual:
    """The config's residuals, one per seed (the runs of one seed averaged, as verdicts count them)."""
    logged = by_seed(run for run in config.runs if run.tokens and run.val_loss is not None)
    if not logged:
        raise ValueError(f"{config.label}: no run logged its tokens")
    params = config.best.params
    seeds = [(statistics.fmean(run.tokens for run in runs), statistics.fmean(run.val_loss for run in runs))
             for runs in logged]
    tokens = statistics.fmean(d for d, _ in seeds)
    measured = statistics.fmean(m for _, m in seeds)
    residuals = tuple(m - law.loss(params, d) for d, m in seeds)
    return ShapeResidual(label, params, tokens, measured, law.loss(params, tokens), residuals,
                         fitted.holds(params, tokens))


def law_error(a: ShapeResidual, b: ShapeResidual, law: LossLaw, dof: int) -> Optional[ExtraError]:
    """The law's own error in L(a) - L(b), from its bootstrap refits (None without them):
    a residual difference is measured against a fitted law, not an exact one."""
    spread = law.refit_losses(a.params, a.tokens) - law.refit_losses(b.params, b.tokens)
    return ExtraError(float(np.var(spread, ddof=1)), dof) if len(spread) > 1 and np.ptp(spread) > 0 else None


def split_gap(a: ShapeResidual, b: ShapeResidual, law: LossLaw, dof: int = 1) -> GapSplit:
    """The gap's parameter and token parts (see the module's docstring) and the shape
    verdict, which carries the law's error (with `dof`, its residual degrees of freedom)."""
    n_a, n_b, d_a, d_b = a.params, b.params, a.tokens, b.tokens
    from_tokens = 0.5 * ((law.loss(n_a, d_a) - law.loss(n_a, d_b)) + (law.loss(n_b, d_a) - law.loss(n_b, d_b)))
    from_params = 0.5 * ((law.loss(n_a, d_a) - law.loss(n_b, d_a)) + (law.loss(n_a, d_b) - law.loss(n_b, d_b)))
    return GapSplit(a, b, from_params, from_tokens,
                    compare(SHAPE_RESIDUAL, a.label, a.residuals, b.label, b.residuals, law_error(a, b, law, dof)))


def shape_effects(findings: Findings, law: LossLaw, fitted: FitRange, configs: int
                  ) -> tuple[list[ShapeResidual], list[GapSplit]]:
    """Every shape of the report's comparison against the law, and the report's shape
    matchups (best wider vs best deeper, each shape vs the reference) split into parts."""
    shapes = findings.shapes
    if shapes is None:
        return [], []
    roles = [("reference", shapes.reference), *(("wider", c) for c in shapes.wider),
             *(("deeper", c) for c in shapes.deeper), *(("other", c) for c in shapes.other)]
    residuals = {id(config): residual_of(config, shape_label(config, role), law, fitted)
                 for role, config in roles if any(run.tokens for run in config.runs)}
    pairs = [(m.a, m.b) for m in ([findings.wider_vs_deeper] if findings.wider_vs_deeper else [])]
    pairs += [(m.a, m.b) for m in findings.against_reference]
    splits = [split_gap(residuals[id(a)], residuals[id(b)], law, residual_dof(configs)) for a, b in pairs
              if id(a) in residuals and id(b) in residuals]
    return list(residuals.values()), splits
