"""The whole scaling-law fit, as fit.json holds it: what went in (runs, compute groups,
noise, the seed run), the rule its "constrained" flags follow, both approaches (Approach 3
by two searches) with N = all and N = non-embedding parameters, how the approaches
compare, and the learning-rate grids. to_json() is fit.json's content; from_json() reads
it back (a fit.json of an older report too: its newer keys take their defaults)."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from llm_sweep.scaling.estimates import (Bounds, Estimate, FlopsPerToken, Json, LossSurface, PowerLaws,
                                       read_estimate)
from llm_sweep.scaling.rules import ConstraintRule
from llm_sweep.scaling.verdicts import pooled_sd, sd_interval

NUMBER_LIST = re.compile(r"\[\s*((?:-?[0-9.eE+-]+|null)(?:,\s*(?:-?[0-9.eE+-]+|null))*)\s*\]")


@dataclass(frozen=True)
class Comparison:
    """Approach 2 against Approach 3 (variable projection) at one compute (the largest
    budget's): tokens per parameter and the exponent a from each, whether their intervals
    are disjoint, and which of the parabola's assumptions fail in these runs (compare.py):
    "grid width", "off-centre grid", "alpha != beta". `parabola_bias`: per budget, the
    parabola's tokens per parameter on the fitted law's own iso-FLOP curve at the sizes
    run, over the law's optimum, minus 1 (None where the budget locates no minimum); the
    same with the sizes centred on the law's optimum (`_centred`: what alpha != beta
    leaves) and pulled halfway towards it (`_narrow`: what the inner half of the width leaves)."""

    compute: float
    tokens_per_param_2: Estimate
    tokens_per_param_3: Estimate
    a_2: Estimate
    a_3: Estimate
    disagree: Optional[bool]  # None: an interval is missing
    alpha_minus_beta: Estimate
    causes: tuple[str, ...]
    parabola_bias: tuple[Optional[float], ...]
    parabola_bias_centred: tuple[Optional[float], ...]
    parabola_bias_narrow: tuple[Optional[float], ...]

    def to_json(self) -> Json:
        return {"C": self.compute, **self.tokens_per_param_2.to_json("approach2_tokens_per_param"),
                **self.tokens_per_param_3.to_json("approach3_tokens_per_param"),
                **self.a_2.to_json("approach2_a"), **self.a_3.to_json("approach3_a"), "disagree": self.disagree,
                **self.alpha_minus_beta.to_json("alpha_minus_beta"), "causes": list(self.causes),
                "parabola_bias": list(self.parabola_bias), "parabola_bias_centred": list(self.parabola_bias_centred),
                "parabola_bias_narrow": list(self.parabola_bias_narrow)}

    @classmethod
    def from_json(cls, block: Json) -> Comparison:
        return cls(block["C"], read_estimate(block, "approach2_tokens_per_param"),
                   read_estimate(block, "approach3_tokens_per_param"), read_estimate(block, "approach2_a"),
                   read_estimate(block, "approach3_a"), block["disagree"], read_estimate(block, "alpha_minus_beta"),
                   tuple(block["causes"]), tuple(block["parabola_bias"]), tuple(block["parabola_bias_centred"]),
                   tuple(block["parabola_bias_narrow"]))


@dataclass(frozen=True)
class ScalingFit:
    """Both approaches, with N one count of parameters (all, or non-embedding): Approach 3
    as Chinchilla searched for it (L-BFGS, fit.json's "approach3") and by variable
    projection ("approach3_varpro"; None in a fit.json of an older report)."""

    approach2: PowerLaws
    approach3: LossSurface
    flops_per_token: FlopsPerToken
    approach3_varpro: Optional[LossSurface] = None
    comparison: Optional[Comparison] = None

    @property
    def law(self) -> LossSurface:
        """The L(N, D) to use: variable projection's, where the fit has one."""
        return self.approach3_varpro or self.approach3

    def to_json(self) -> Json:
        extra: Json = {}
        if self.approach3_varpro is not None:
            extra["approach3_varpro"] = self.approach3_varpro.to_json()
        if self.comparison is not None:
            extra["comparison"] = self.comparison.to_json()
        return {"approach2": self.approach2.to_json(), "approach3": self.approach3.to_json(),
                "flops_per_token": self.flops_per_token.to_json(), **extra}

    @classmethod
    def from_json(cls, block: Json) -> ScalingFit:
        varpro, comparison = block.get("approach3_varpro"), block.get("comparison")
        return cls(PowerLaws.from_json(block["approach2"]), LossSurface.from_json(block["approach3"]),
                   FlopsPerToken.from_json(block["flops_per_token"]),
                   None if varpro is None else LossSurface.from_json(varpro),
                   None if comparison is None else Comparison.from_json(comparison))


@dataclass(frozen=True)
class Noise:
    """Seed-to-seed noise of the configs run with several seeds (None without any): the
    one noise record of the project, for the report's verdicts and for fit.json."""

    repeated_configs: int
    max_spread: Optional[float]  # the widest max - min over one config's seeds
    pooled_sd: Optional[float]
    # The sd of the configs' mean losses around the fitted L(N, D) (variable projection, N =
    # all parameters), its five constants' degrees of freedom taken off: the scatter the
    # fit's intervals rest on, beside the seed noise (None in an older fit.json).
    scatter: Optional[float] = None
    dof: int = 0  # of the pooled sd: seeds minus one, summed over the repeated configs

    @classmethod
    def of_seeds(cls, groups: Sequence[Sequence[float]]) -> Noise:
        """The noise of configs given as their seeds' values."""
        repeated = [np.asarray(x, dtype=float) for x in groups if len(x) > 1]
        if not repeated:
            return cls(0, None, None)
        return cls(len(repeated), float(max(np.ptp(x) for x in repeated)), pooled_sd(*repeated),
                   dof=sum(len(x) - 1 for x in repeated))

    @property
    def pooled_sd_ci(self) -> Bounds:
        """The pooled sd's 95% interval (None without one)."""
        if self.pooled_sd is None or self.dof < 1:
            return None, None
        return sd_interval(self.pooled_sd, self.dof)

    def to_json(self) -> Json:
        return {"repeated_configs": self.repeated_configs, "max_spread": self.max_spread,
                "pooled_sd": self.pooled_sd, "scatter_around_law": self.scatter, "dof": self.dof,
                "pooled_sd_ci": list(self.pooled_sd_ci)}

    @classmethod
    def from_json(cls, block: Json) -> Noise:
        return cls(block["repeated_configs"], block["max_spread"], block["pooled_sd"],
                   block.get("scatter_around_law"), block.get("dof", 0))


@dataclass(frozen=True)
class SeedRun:
    """The seed's run as the fit compared against it (core/references.py)."""

    params: float
    non_embedding_params: float
    tokens: float
    compute: float

    def to_json(self) -> Json:
        return {"N": self.params, "N_non_embedding": self.non_embedding_params, "D": self.tokens,
                "C": self.compute}

    @classmethod
    def from_json(cls, block: Json) -> SeedRun:
        return cls(block["N"], block["N_non_embedding"], block["D"], block["C"])


@dataclass(frozen=True)
class FitInputs:
    """What the fit rests on."""

    runs: int
    configs: int
    groups: int  # compute groups (fit.json's "budgets")
    groups_from_compute: int  # of them formed by rounding spent compute, not by budget.flops
    skipped: dict[str, int]  # runs left out, by why
    configs_not_best: int
    c_range: tuple[float, float]
    n_range: tuple[float, float]
    d_range: tuple[float, float]
    bootstrap_resamples: int
    bootstrap_seed: int
    seed_run: SeedRun

    def to_json(self) -> Json:
        return {"runs": self.runs, "configs": self.configs, "budgets": self.groups,
                "budgets_from_compute": self.groups_from_compute, "skipped": dict(self.skipped),
                "configs_not_best": self.configs_not_best, "C_range": list(self.c_range),
                "N_range": list(self.n_range), "D_range": list(self.d_range),
                "bootstrap_resamples": self.bootstrap_resamples, "bootstrap_seed": self.bootstrap_seed,
                "seed_run": self.seed_run.to_json()}

    @classmethod
    def from_json(cls, block: Json) -> FitInputs:
        low_high = lambda key: (block[key][0], block[key][1])
        return cls(block["runs"], block["configs"], block["budgets"], block["budgets_from_compute"],
                   dict(block["skipped"]), block["configs_not_best"], low_high("C_range"),
                   low_high("N_range"), low_high("D_range"), block["bootstrap_resamples"],
                   block["bootstrap_seed"], SeedRun.from_json(block["seed_run"]))


@dataclass(frozen=True)
class LrGrid:
    """A shape run at several learning rates in one training budget: the best (lowest mean
    final loss over its seeds), and whether it sits at an edge of the grid."""

    budget: str
    shape: str
    arch: str
    optimizer: str
    lrs: tuple[float, ...]
    best_lr: float
    at_edge: bool

    def to_json(self) -> Json:
        return {"budget": self.budget, "shape": self.shape, "arch": self.arch, "optimizer": self.optimizer,
                "lrs": list(self.lrs), "best_lr": self.best_lr, "at_edge": self.at_edge}

    @classmethod
    def from_json(cls, block: Json) -> LrGrid:
        return cls(block["budget"], block["shape"], block["arch"], block["optimizer"], tuple(block["lrs"]),
                   block["best_lr"], block["at_edge"])


@dataclass(frozen=True)
class FitResult:
    """fit.json: `total` (N = all parameters) is its top level, beside the inputs.
    `rule` is None only for a fit.json of an older report, whose flags followed an older
    rule (an interval narrower than its value)."""

    n_runs: int
    noise: Noise
    inputs: FitInputs
    total: ScalingFit
    non_embedding: ScalingFit
    lr_grid: Optional[tuple[LrGrid, ...]] = None  # set by report --fit; absent from fit.json when None
    rule: Optional[ConstraintRule] = None

    def to_json(self) -> Json:
        grids = {} if self.lr_grid is None else {"lr_grid": [grid.to_json() for grid in self.lr_grid]}
        rule = {} if self.rule is None else {"constraint_rule": self.rule.to_json()}
        return {"n_runs": self.n_runs, "noise": self.noise.to_json(), "inputs": self.inputs.to_json(),
                **self.total.to_json(), "non_embedding": self.non_embedding.to_json(), **grids, **rule}

    def dumps(self) -> str:
        """fit.json's text: indented, with each list of numbers (an interval, a refit) on one line."""
        text = json.dumps(self.to_json(), indent=2, allow_nan=False)
        return NUMBER_LIST.sub(lambda m: "[" + " ".join(m.group(1).split()) + "]", text) + "\n"

    @classmethod
    def from_json(cls, block: Json) -> FitResult:
        grids, rule = block.get("lr_grid"), block.get("constraint_rule")
        return cls(block["n_runs"], Noise.from_json(block["noise"]), FitInputs.from_json(block["inputs"]),
                   ScalingFit.from_json(block), ScalingFit.from_json(block["non_embedding"]),
                   None if grids is None else tuple(LrGrid.from_json(grid) for grid in grids),
                   None if rule is None else ConstraintRule.from_json(rule))
