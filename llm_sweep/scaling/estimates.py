"""The scaling laws of a fit (scaling/fit.py) as frozen values: estimates with their
intervals and whether the data constrain them (scaling/rules.py), Approach 2's minima
and power laws, Approach 3's L(N, D). Each part's to_json() gives its block of fit.json
and from_json() reads it back; attributes have Python's names, the JSON keeps the keys
fit.json has always had and adds the newer ones after them (a fit.json written before
them reads back with their defaults)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np

from llm_sweep.scaling.law import Law

Bounds = tuple[Optional[float], Optional[float]]  # a 95% interval; None: an infinite bound
Json = dict[str, Any]
CONSTANTS = ("E", "A", "B", "alpha", "beta", "a", "b")  # Approach 3's, in fit.json's order
PARAMETERS = ("E", "A", "B", "alpha", "beta")  # the ones the search varies
# The computes a fit states its optimum at (Optimum.label).
LARGEST_BUDGET, SEED_RUN = "largest budget", "seed run"


def _bounds(pair: list) -> Bounds:
    low, high = pair
    return low, high


@dataclass(frozen=True)
class Estimate:
    """A fitted value (None where it is not finite) and its 95% bootstrap interval."""

    value: Optional[float]
    ci: Bounds

    def to_json(self, name: str) -> Json:
        """`name` and `name`_ci (a Constant's flag is placed by the block that holds it)."""
        return {name: self.value, f"{name}_ci": list(self.ci)}


def read_estimate(block: Json, name: str) -> Estimate:
    return Estimate(block[name], _bounds(block[f"{name}_ci"]))


@dataclass(frozen=True)
class Constant(Estimate):
    """A fitted constant or exponent, whether the data constrain it and, when they do
    not, why (rules.py)."""

    constrained: bool
    reason: str = ""


def _constant(block: Json, name: str, constrained: bool, reason: str = "") -> Constant:
    return Constant(block[name], _bounds(block[f"{name}_ci"]), constrained, reason)


@dataclass(frozen=True)
class Optimum:
    """The compute-optimal N and D at one compute (the largest group's, the seed run's);
    constrained when its tokens per parameter is (and the exponents it rests on are)."""

    label: str
    compute: float
    n_opt: Estimate
    d_opt: Optional[float]
    tokens_per_param: Estimate
    extrapolation: bool
    outside_range_factor: float  # how far C lies outside the fitted compute; 1 inside
    constrained: bool = False
    reason: str = "written before the constraint rule"

    def to_json(self) -> Json:
        return {"label": self.label, "C": self.compute, **self.n_opt.to_json("N_opt"), "D_opt": self.d_opt,
                **self.tokens_per_param.to_json("tokens_per_param"), "extrapolation": self.extrapolation,
                "outside_range_factor": self.outside_range_factor, "constrained": self.constrained,
                "why_not_constrained": self.reason}

    @classmethod
    def from_json(cls, block: Json) -> Optimum:
        return cls(block["label"], block["C"], read_estimate(block, "N_opt"), block["D_opt"],
                   read_estimate(block, "tokens_per_param"), block["extrapolation"],
                   block["outside_range_factor"], block.get("constrained", False),
                   block.get("why_not_constrained", cls.reason))


def at_largest_budget(optima: "Sequence[Optimum]") -> Optional[Optimum]:
    """The optimum at the largest fitted budget, where a fit states one."""
    return next((at for at in optima if at.label == LARGEST_BUDGET), None)


@dataclass(frozen=True)
class IsoflopMinimum:
    """Approach 2 in one compute group: the vertex of its parabola of loss in ln N, where
    it sits among the sizes run, and how many bootstrap refits found no vertex inside them."""

    compute: float
    runs: int
    n_opt: Estimate
    d_opt: Optional[float]
    tokens_per_param: Estimate
    loss_min: Optional[float]
    located: bool  # fit.json's "constrained"
    reason: str  # why the minimum is not located; "" when it is
    position: Optional[float] = None  # the vertex's ln N within the runs': 0 the smallest, 1 the largest
    size_span: Optional[float] = None  # the largest size run / the smallest
    reach: Optional[float] = None  # the farthest size from the vertex, as a factor of N
    bootstrap_failed: int = 0  # refits whose vertex is missing or outside the sizes run
    tokens_per_param_reason: str = "written before the constraint rule"  # "" when constrained

    def to_json(self) -> Json:
        return {"C": self.compute, "runs": self.runs, **self.n_opt.to_json("N_opt"), "D_opt": self.d_opt,
                **self.tokens_per_param.to_json("tokens_per_param"), "loss_min": self.loss_min,
                "constrained": self.located, "reason": self.reason, "vertex_position": self.position,
                "size_span": self.size_span, "reach": self.reach, "bootstrap_failed": self.bootstrap_failed,
                "tokens_per_param_constrained": not self.tokens_per_param_reason,
                "tokens_per_param_why_not_constrained": self.tokens_per_param_reason}

    @classmethod
    def from_json(cls, block: Json) -> IsoflopMinimum:
        return cls(block["C"], block["runs"], read_estimate(block, "N_opt"), block["D_opt"],
                   read_estimate(block, "tokens_per_param"), block["loss_min"], block["constrained"],
                   block["reason"], block.get("vertex_position"), block.get("size_span"), block.get("reach"),
                   block.get("bootstrap_failed", 0),
                   block.get("tokens_per_param_why_not_constrained", cls.tokens_per_param_reason))


@dataclass(frozen=True)
class PowerLaws:
    """Approach 2: N_opt = n_opt_coefficient C^a and D_opt = d_opt_coefficient C^b,
    fitted to the located minima. A bootstrap refit fails when a budget located in the
    data has no vertex inside its sizes in that resample."""

    minima: tuple[IsoflopMinimum, ...]  # one per compute group, by compute
    fitted_budgets: int  # the groups whose minimum is located
    bootstrap_failed: float  # share of the refits with no frontier
    a: Constant
    b: Constant
    n_opt_coefficient: Optional[float]
    d_opt_coefficient: Optional[float]
    at_compute: tuple[Optimum, ...]  # empty without a frontier
    bootstrap_failed_refits: int = 0  # their count

    def to_json(self) -> Json:
        return {"budgets": [minimum.to_json() for minimum in self.minima],
                "tokens_per_param": [minimum.tokens_per_param.value for minimum in self.minima],
                "fitted_budgets": self.fitted_budgets, "bootstrap_failed": self.bootstrap_failed,
                **self.a.to_json("a"), "a_constrained": self.a.constrained,
                **self.b.to_json("b"), "b_constrained": self.b.constrained,
                "N_opt_coefficient": self.n_opt_coefficient, "D_opt_coefficient": self.d_opt_coefficient,
                "at_compute": [at.to_json() for at in self.at_compute],
                "bootstrap_failed_refits": self.bootstrap_failed_refits,
                "why_not_constrained": {"a": self.a.reason, "b": self.b.reason}}

    @classmethod
    def from_json(cls, block: Json) -> PowerLaws:
        why = block.get("why_not_constrained", {})
        return cls(tuple(IsoflopMinimum.from_json(b) for b in block["budgets"]), block["fitted_budgets"],
                   block["bootstrap_failed"], _constant(block, "a", block["a_constrained"], why.get("a", "")),
                   _constant(block, "b", block["b_constrained"], why.get("b", "")), block["N_opt_coefficient"],
                   block["D_opt_coefficient"], tuple(Optimum.from_json(at) for at in block["at_compute"]),
                   block.get("bootstrap_failed_refits", 0))


@dataclass(frozen=True)
class SurfaceSearch:
    """How an L(N, D) was searched for and where it ended: the box (None: unbounded), the
    parameters on one of its bounds ("lower"/"upper") in the full fit, the share of the
    converged refits with each parameter on a bound, the refits that failed (no start
    converged, or no finite optimum), and the full fit's objective (the same function for
    every search, so the lower one found the better optimum)."""

    method: str
    box: dict[str, Bounds]
    at_bound: dict[str, str] = field(default_factory=dict)
    resamples_at_bound: dict[str, float] = field(default_factory=dict)
    bootstrap_failed_refits: int = 0
    converged: bool = True
    objective: Optional[float] = None  # Huber on the log-residuals, in units of delta: lower fits better

    def to_json(self) -> Json:
        return {"method": self.method, "bounds": {name: list(box) for name, box in self.box.items()},
                "at_bound": dict(self.at_bound), "resamples_at_bound": dict(self.resamples_at_bound),
                "bootstrap_failed_refits": self.bootstrap_failed_refits, "converged": self.converged,
                "objective": self.objective}

    @classmethod
    def from_json(cls, block: Json) -> SurfaceSearch:
        return cls(block["method"], {name: _bounds(box) for name, box in block["bounds"].items()},
                   dict(block["at_bound"]), dict(block["resamples_at_bound"]), block["bootstrap_failed_refits"],
                   block["converged"], block["objective"])


LEGACY_SEARCH = SurfaceSearch("L-BFGS-B on all five parameters (a fit.json without its search record)", {})


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
    search: SurfaceSearch = LEGACY_SEARCH
    # The bootstrap's converged refits as (E, A, B, alpha, beta): the law's own uncertainty,
    # carried into predictions from it (shape verdicts); empty in an older fit.json.
    refits: tuple[tuple[float, ...], ...] = ()

    def loss(self, n: Any, d: Any) -> Any:
        """The fitted L at N parameters and D tokens (numbers or arrays)."""
        return Law(*(getattr(self, name).value for name in PARAMETERS)).loss(n, d)

    def refit_losses(self, n: float, d: float) -> np.ndarray:
        """L at (N, D) under each refit of the bootstrap (empty without refits)."""
        return np.array([Law(*refit).loss(n, d) for refit in self.refits])

    @property
    def theta(self) -> np.ndarray:
        """(ln A, ln B, ln E, alpha, beta), as scaling.surface.surface_optimum takes
        them; a constant of 0 (on its bound) is -inf."""
        with np.errstate(divide="ignore"):
            return np.array([*np.log([self.A.value, self.B.value, self.E.value]), self.alpha.value,
                             self.beta.value])

    @property
    def fitted(self) -> bool:
        """Whether every constant of L(N, D) has a finite value."""
        return all(getattr(self, name).value is not None for name in PARAMETERS)

    def to_json(self) -> Json:
        constants = {name: getattr(self, name) for name in CONSTANTS}
        values: Json = {}
        for name, constant in constants.items():
            values.update(constant.to_json(name))
        return {"constrained": {name: constant.constrained for name, constant in constants.items()},
                **values, "at_compute": [at.to_json() for at in self.at_compute],
                "huber_delta": self.huber_delta, "search": self.search.to_json(),
                "why_not_constrained": {name: constant.reason for name, constant in constants.items()},
                "refits": [list(refit) for refit in self.refits]}

    @classmethod
    def from_json(cls, block: Json) -> LossSurface:
        flags, why = block["constrained"], block.get("why_not_constrained", {})
        search = SurfaceSearch.from_json(block["search"]) if "search" in block else LEGACY_SEARCH
        return cls(*(_constant(block, name, flags[name], why.get(name, "")) for name in CONSTANTS),
                   at_compute=tuple(Optimum.from_json(at) for at in block["at_compute"]),
                   huber_delta=block["huber_delta"], search=search,
                   refits=tuple(tuple(refit) for refit in block.get("refits", ())))


@dataclass(frozen=True)
class FlopsPerToken:
    """Flops per token as c N^k, fitted to the runs' logged compute / tokens."""

    coefficient: float  # c
    exponent: float  # k

    @property
    def ln(self) -> np.ndarray:
        """(ln c, k), as scaling.surface.surface_optimum takes them."""
        return np.array([math.log(self.coefficient), self.exponent])

    def tokens(self, compute: Any, params: Any) -> Any:
        """D = C / (c N^k)."""
        return compute / (self.coefficient * np.power(params, self.exponent))

    def to_json(self) -> Json:
        return {"coefficient": self.coefficient, "exponent": self.exponent}

    @classmethod
    def from_json(cls, block: Json) -> FlopsPerToken:
        return cls(block["coefficient"], block["exponent"])
