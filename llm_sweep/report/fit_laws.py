"""The scaling laws of a fit (report/fit.py) as frozen values: estimates with their
intervals, Approach 2's minima and power laws, Approach 3's L(N, D). Each part's to_json()
gives its block of fit.json and from_json() reads it back; attributes have Python's names,
the JSON keeps the keys, nesting and order fit.json has always had (fit_result.py)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

Bounds = tuple[Optional[float], Optional[float]]  # a 95% interval; None: an infinite bound
Json = dict[str, Any]
CONSTANTS = ("E", "A", "B", "alpha", "beta", "a", "b")  # Approach 3's, in fit.json's order


def _bounds(pair: list) -> Bounds:
    low, high = pair
    return low, high


@dataclass(frozen=True)
class Estimate:
    """A fitted value (None where it is not finite) and its 95% bootstrap interval."""

    value: Optional[float]
    ci: Bounds

    @property
    def narrow(self) -> bool:
        """Whether the interval is finite and narrower than the value."""
        low, high = self.ci
        return (self.value is not None and low is not None and high is not None
                and high - low < abs(self.value))

    def to_json(self, name: str) -> Json:
        """`name` and `name`_ci (a Constant's flag is placed by the block that holds it)."""
        return {name: self.value, f"{name}_ci": list(self.ci)}


def _estimate(block: Json, name: str) -> Estimate:
    return Estimate(block[name], _bounds(block[f"{name}_ci"]))


@dataclass(frozen=True)
class Constant(Estimate):
    """A fitted constant or exponent and whether the data constrain it (an interval
    narrower than the value, few failed refits, not on a bound of the search)."""

    constrained: bool


def _constant(block: Json, name: str, constrained: bool) -> Constant:
    return Constant(block[name], _bounds(block[f"{name}_ci"]), constrained)


@dataclass(frozen=True)
class Optimum:
    """The compute-optimal N and D at one compute (the largest group's, the seed run's)."""

    label: str
    compute: float
    n_opt: Estimate
    d_opt: Optional[float]
    tokens_per_param: Estimate
    extrapolation: bool
    outside_range_factor: float  # how far C lies outside the fitted compute; 1 inside

    def to_json(self) -> Json:
        return {"label": self.label, "C": self.compute, **self.n_opt.to_json("N_opt"), "D_opt": self.d_opt,
                **self.tokens_per_param.to_json("tokens_per_param"), "extrapolation": self.extrapolation,
                "outside_range_factor": self.outside_range_factor}

    @classmethod
    def from_json(cls, block: Json) -> Optimum:
        return cls(block["label"], block["C"], _estimate(block, "N_opt"), block["D_opt"],
                   _estimate(block, "tokens_per_param"), block["extrapolation"],
                   block["outside_range_factor"])


@dataclass(frozen=True)
class IsoflopMinimum:
    """Approach 2 in one compute group: the vertex of its parabola of loss in ln N."""

    compute: float
    runs: int
    n_opt: Estimate
    d_opt: Optional[float]
    tokens_per_param: Estimate
    loss_min: Optional[float]
    located: bool  # fit.json's "constrained"
    reason: str  # why the minimum is not located; "" when it is

    def to_json(self) -> Json:
        return {"C": self.compute, "runs": self.runs, **self.n_opt.to_json("N_opt"), "D_opt": self.d_opt,
                **self.tokens_per_param.to_json("tokens_per_param"), "loss_min": self.loss_min,
                "constrained": self.located, "reason": self.reason}

    @classmethod
    def from_json(cls, block: Json) -> IsoflopMinimum:
        return cls(block["C"], block["runs"], _estimate(block, "N_opt"), block["D_opt"],
                   _estimate(block, "tokens_per_param"), block["loss_min"], block["constrained"],
                   block["reason"])


@dataclass(frozen=True)
class PowerLaws:
    """Approach 2: N_opt = n_opt_coefficient C^a and D_opt = d_opt_coefficient C^b,
    fitted to the located minima."""

    minima: tuple[IsoflopMinimum, ...]  # one per compute group, by compute
    fitted_budgets: int  # the groups whose minimum is located
    bootstrap_failed: float  # share of the refits with no frontier
    a: Constant
    b: Constant
    n_opt_coefficient: Optional[float]
    d_opt_coefficient: Optional[float]
    at_compute: tuple[Optimum, ...]  # empty without a frontier

    def to_json(self) -> Json:
        return {"budgets": [minimum.to_json() for minimum in self.minima],
                "tokens_per_param": [minimum.tokens_per_param.value for minimum in self.minima],
                "fitted_budgets": self.fitted_budgets, "bootstrap_failed": self.bootstrap_failed,
                **self.a.to_json("a"), "a_constrained": self.a.constrained,
                **self.b.to_json("b"), "b_constrained": self.b.constrained,
                "N_opt_coefficient": self.n_opt_coefficient, "D_opt_coefficient": self.d_opt_coefficient,
                "at_compute": [at.to_json() for at in self.at_compute]}

    @classmethod
    def from_json(cls, block: Json) -> PowerLaws:
        return cls(tuple(IsoflopMinimum.from_json(b) for b in block["budgets"]), block["fitted_budgets"],
                   block["bootstrap_failed"], _constant(block, "a", block["a_constrained"]),
                   _constant(block, "b", block["b_constrained"]), block["N_opt_coefficient"],
                   block["D_opt_coefficient"], tuple(Optimum.from_json(at) for at in block["at_compute"]))


@dataclass(frozen=True)
class LossSurface:
    """Approach 3: L(N, D) = E + A / N^alpha + B / D^beta; a and b are the exponents of
    N_opt and D_opt in C that it implies."""

    E: Constant
    A: Constant
    B: Constant
    alpha: Constant
    beta: Constant
    a: Constant
    b: Constant
    at_compute: tuple[Optimum, ...]
    huber_delta: float

    def loss(self, n: float, d: float) -> float:
        return self.E.value + self.A.value / n ** self.alpha.value + self.B.value / d ** self.beta.value

    @property
    def theta(self) -> np.ndarray:
        """(ln A, ln B, ln E, alpha, beta), as report.fit.surface_optimum takes them."""
        return np.array([math.log(self.A.value), math.log(self.B.value), math.log(self.E.value),
                         self.alpha.value, self.beta.value])

    def to_json(self) -> Json:
        constants = {name: getattr(self, name) for name in CONSTANTS}
        values: Json = {}
        for name, constant in constants.items():
            values.update(constant.to_json(name))
        return {"constrained": {name: constant.constrained for name, constant in constants.items()},
                **values, "at_compute": [at.to_json() for at in self.at_compute],
                "huber_delta": self.huber_delta}

    @classmethod
    def from_json(cls, block: Json) -> LossSurface:
        flags = block["constrained"]
        return cls(*(_constant(block, name, flags[name]) for name in CONSTANTS),
                   at_compute=tuple(Optimum.from_json(at) for at in block["at_compute"]),
                   huber_delta=block["huber_delta"])


@dataclass(frozen=True)
class FlopsPerToken:
    """Flops per token as c N^k, fitted to the runs' logged compute / tokens."""

    coefficient: float  # c
    exponent: float  # k

    @property
    def ln(self) -> np.ndarray:
        """(ln c, k), as report.fit.surface_optimum takes them."""
        return np.array([math.log(self.coefficient), self.exponent])

    def tokens(self, compute: float, params: float) -> float:
        """D = C / (c N^k)."""
        return compute / (self.coefficient * params ** self.exponent)

    def to_json(self) -> Json:
        return {"coefficient": self.coefficient, "exponent": self.exponent}

    @classmethod
    def from_json(cls, block: Json) -> FlopsPerToken:
        return cls(block["coefficient"], block["exponent"])


@dataclass(frozen=True)
class ScalingFit:
    """Both approaches, with N one count of parameters (all, or non-embedding)."""

    approach2: PowerLaws
    approach3: LossSurface
    flops_per_token: FlopsPerToken

    def to_json(self) -> Json:
        return {"approach2": self.approach2.to_json(), "approach3": self.approach3.to_json(),
                "flops_per_token": self.flops_per_token.to_json()}

    @classmethod
    def from_json(cls, block: Json) -> ScalingFit:
        return cls(PowerLaws.from_json(block["approach2"]), LossSurface.from_json(block["approach3"]),
                   FlopsPerToken.from_json(block["flops_per_token"]))
