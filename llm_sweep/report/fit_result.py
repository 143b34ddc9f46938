"""The whole scaling-law fit, as fit.json holds it: what went in (runs, compute groups,
noise, the seed run), both approaches with N = all and N = non-embedding parameters, and
the learning-rate grids. to_json() is fit.json's content; from_json() reads it back."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from llm_sweep.report.fit_laws import Json, ScalingFit


@dataclass(frozen=True)
class Noise:
    """Seed-to-seed noise of the configs run with several seeds (None without any)."""

    repeated_configs: int
    max_spread: Optional[float]
    pooled_sd: Optional[float]

    def to_json(self) -> Json:
        return {"repeated_configs": self.repeated_configs, "max_spread": self.max_spread,
                "pooled_sd": self.pooled_sd}

    @classmethod
    def from_json(cls, block: Json) -> Noise:
        return cls(block["repeated_configs"], block["max_spread"], block["pooled_sd"])


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
    """fit.json: `total` (N = all parameters) is its top level, beside the inputs."""

    n_runs: int
    noise: Noise
    inputs: FitInputs
    total: ScalingFit
    non_embedding: ScalingFit
    lr_grid: Optional[tuple[LrGrid, ...]] = None  # set by report --fit; absent from fit.json when None

    def to_json(self) -> Json:
        grids = {} if self.lr_grid is None else {"lr_grid": [grid.to_json() for grid in self.lr_grid]}
        return {"n_runs": self.n_runs, "noise": self.noise.to_json(), "inputs": self.inputs.to_json(),
                **self.total.to_json(), "non_embedding": self.non_embedding.to_json(), **grids}

    @classmethod
    def from_json(cls, block: Json) -> FitResult:
        grids = block.get("lr_grid")
        return cls(block["n_runs"], Noise.from_json(block["noise"]), FitInputs.from_json(block["inputs"]),
                   ScalingFit.from_json(block), ScalingFit.from_json(block["non_embedding"]),
                   None if grids is None else tuple(LrGrid.from_json(grid) for grid in grids))
