"""For a compute budget, the compute-optimal model size and tokens from a scaling-law fit
(the fit.json of `python -m llm_sweep.report --fit`), a concrete shape of about that
size, and where each model preset stands against it.

The optimum comes from Approach 3 (the fitted L(N, D), by variable projection where the
fit has it) when its alpha, beta and a are constrained, else from Approach 2 (the
iso-FLOP minima's power laws) when its a is; the output says which. When neither is, plan
refuses in one line naming why: an optimum from an exponent the data do not constrain is
not a plan. A fit.json of an older report (no "constraint_rule") had looser flags: its
exponents are also held to the current rule's width. N counts all parameters, as the fit does.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from llm_sweep.core.errors import DataError
from llm_sweep.core.model_config import ModelConfig
from llm_sweep.core.size import flops_per_token, param_count
from llm_sweep.scaling.estimates import Constant, FlopsPerToken, LossSurface, PowerLaws
from llm_sweep.scaling.optimum import outside_factor
from llm_sweep.scaling.fit_record import FitResult
from llm_sweep.scaling.rules import RULE
from llm_sweep.scaling.surface import surface_optimum
from llm_sweep.report.tables import markdown_table, ratio, si

HEAD_DIM = 64  # heads of 64, as the presets and the seed use
ASPECT = (16, 256)  # plausible n_embd / n_layer
TARGET_ASPECT = 100  # the seed's wide3 (1024 / 10); among shapes of the right size, the nearest
SIZE_TOLERANCE = 0.05  # shapes within this of N_opt count as the right size
MAX_LAYERS = 64
MAX_WIDTH = 8192


@dataclass(frozen=True)
class Law:
    """What plan needs of a fit.json: both approaches and flops per token as c N^k."""

    approach3: LossSurface  # variable projection's, where the fit has it
    approach2: PowerLaws
    per_token: FlopsPerToken
    c_range: tuple[float, float]

    def loss(self, n: float, d: float) -> float:
        """Approach 3's L(N, D) = E + A / N^alpha + B / D^beta."""
        return float(self.approach3.loss(n, d))

    def uses_approach3(self) -> bool:
        three = self.approach3
        return bool(three.alpha.constrained and three.beta.constrained and three.a.constrained)

    def frontier_exponent(self) -> float:
        """a, the exponent of N_opt in C: Approach 3's when it is used, else Approach 2's."""
        a = self.approach3.a if self.uses_approach3() else self.approach2.a
        return math.nan if a.value is None else a.value

    def unconstrained(self) -> str:
        """Why neither approach gives a constrained optimum ("" when one does)."""
        if self.uses_approach3() or self.approach2.a.constrained:
            return ""
        three, by_reason = self.approach3, {}
        for name in ("alpha", "beta", "a"):
            constant = getattr(three, name)
            if not constant.constrained:
                by_reason.setdefault(constant.reason or "not constrained", []).append(name)
        loose = ", ".join(f"{' and '.join(names)} ({reason})" for reason, names in by_reason.items())
        return f"Approach 3's {loose}; Approach 2's a ({self.approach2.a.reason or 'not constrained'})"

    def optimal_params(self, compute: float) -> float:
        """N_opt at this compute: where dL/dN = 0 along C = c N^k D (Approach 3), else
        Approach 2's N_opt = coefficient x C^a; a DataError when neither is constrained."""
        if self.uses_approach3():
            return float(np.exp(surface_optimum(self.approach3.theta, math.log(compute), self.per_token.ln)))
        why = self.unconstrained()
        if why:
            raise DataError(f"the fit does not constrain the compute exponent plan needs: {why}; "
                            "the fit's summary.md says what its runs leave open")
        two = self.approach2
        return two.n_opt_coefficient * compute ** two.a.value

    def optimal_tokens(self, compute: float, params: float) -> float:
        return self.per_token.tokens(compute, params)

    def source(self) -> str:
        if self.uses_approach3():
            return "Approach 3, the fitted L(N, D); alpha, beta and a constrained"
        return "Approach 2, the iso-FLOP minima (Approach 3 not constrained); a constrained"


def _held_to_rule(constant: Constant, name: str) -> Constant:
    """An older fit.json's flag, also held to the current rule's width."""
    if not constant.constrained:
        return replace(constant, reason=constant.reason or f"95% CI {constant.ci[0]:.3g} to {constant.ci[1]:.3g}"
                       if None not in constant.ci else "no interval")
    reason = RULE.judge(name, constant.value, constant.ci)
    return replace(constant, constrained=not reason, reason=reason)


def _older(three: LossSurface, two: PowerLaws) -> tuple[LossSurface, PowerLaws]:
    rejudged = {name: _held_to_rule(getattr(three, name), name) for name in ("alpha", "beta", "a")}
    return replace(three, **rejudged), replace(two, a=_held_to_rule(two.a, "a"))


def read_fit(path: Path) -> Law:
    """The scaling law in a fit.json; a DataError names what is missing."""
    try:
        fit = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"--fit {path}: {exc}") from exc
    try:
        result = FitResult.from_json(fit)
    except (KeyError, TypeError, ValueError) as exc:
        what = f"no {exc}" if isinstance(exc, KeyError) else str(exc)
        raise DataError(f"--fit {path}: not a fit.json of `python -m llm_sweep.report --fit` ({what})") from exc
    three, two = result.total.law, result.total.approach2
    if not three.fitted:
        raise DataError(f"--fit {path}: Approach 3 has no fitted constants")
    if result.rule is None:
        three, two = _older(three, two)
    return Law(three, two, result.total.flops_per_token, result.inputs.c_range)


def shapes(base: ModelConfig) -> list[ModelConfig]:
    """Shapes of 64-wide heads and plausible aspect ratios, from `base` (arch, vocab)."""
    found = []
    for n_layer in range(1, MAX_LAYERS + 1):
        for n_embd in range(HEAD_DIM, MAX_WIDTH + 1, HEAD_DIM):
            if ASPECT[0] <= n_embd / n_layer <= ASPECT[1] or (n_layer == 1 and n_embd <= ASPECT[1]):
                found.append(replace(base, name=f"{n_layer}x{n_embd}", n_layer=n_layer, n_embd=n_embd,
                                     n_head=n_embd // HEAD_DIM, head_dim=HEAD_DIM))
    return found


def nearest_shape(params: float, base: ModelConfig) -> ModelConfig:
    """Of the shapes within SIZE_TOLERANCE of `params`, the one nearest TARGET_ASPECT; else
    the shape nearest in size."""
    candidates = shapes(base)
    off = lambda shape: abs(math.log(param_count(shape) / params))
    close = [shape for shape in candidates if off(shape) <= math.log1p(SIZE_TOLERANCE)]
    if close:
        return min(close, key=lambda shape: abs(math.log(shape.n_embd / shape.n_layer / TARGET_ASPECT)))
    return min(candidates, key=off)


@dataclass(frozen=True)
class FitPlan:
    compute: float
    params: float  # N_opt
    tokens: float  # D_opt
    shape: ModelConfig
    shape_tokens: float  # the shape's tokens in the compute, at the planned seq_len
    law: Law

    @property
    def tokens_per_param(self) -> float:
        return self.tokens / self.params


def plan_from_fit(law: Law, compute: float, base: ModelConfig, seq_len: int) -> FitPlan:
    n_opt = law.optimal_params(compute)
    shape = nearest_shape(n_opt, base)
    return FitPlan(compute, n_opt, law.optimal_tokens(compute, n_opt), shape,
                   compute / flops_per_token(shape, seq_len), law)


def compute_at_tokens_per_s(law: Law, tokens_per_s: float, seconds: float) -> float:
    """The compute of a run at a fixed token rate, when the model is the compute-optimal
    one for that compute: C = rate x time x c N_opt(C)^k, solved by iteration. The map
    contracts only while N_opt grows slower than the compute it costs (k x a < 1); where it
    does not, no such compute exists and the error says so in one line."""
    c, k = law.per_token.coefficient, law.per_token.exponent
    if k * law.frontier_exponent() >= 1:
        _outruns(law)
    ln_scale = math.log(tokens_per_s * seconds * c)
    ln_params = math.log(1e6)  # any start
    for _ in range(200):
        ln_compute = ln_scale + k * ln_params
        try:
            moved = math.log(law.optimal_params(math.exp(ln_compute)))
        except (OverflowError, ValueError):  # the iteration ran off to 0 or infinity
            break
        if abs(moved - ln_params) < 1e-10:
            return math.exp(ln_scale + k * moved)
        ln_params = moved
    _outruns(law)


def _outruns(law: Law) -> None:
    """The one-line error for a fit whose N_opt grows as fast as the compute it costs."""
    k, why = law.per_token.exponent, law.unconstrained()
    raise DataError(f"--tokens-per-s with this fit has no compute-optimal run: N_opt grows as fast as "
                    f"the compute it costs (k x a = {k:.3g} x {law.frontier_exponent():.3g} >= 1, k from "
                    "flops_per_token, a the fit's compute exponent); give the compute with --flops"
                    + (f" (though this fit constrains no compute exponent: {why})" if why else ""))


def _outside(plan: FitPlan) -> str:
    lo, hi = plan.law.c_range
    factor = outside_factor(plan.compute, lo, hi)
    return "" if factor == 1 else (f"Extrapolation: C is {factor:.3g}x outside the fitted runs' compute "
                                   f"({lo:.3g} to {hi:.3g} FLOPs).")


def format_fit_plan(plan: FitPlan, presets: Sequence[ModelConfig], seq_len: int, header: str) -> str:
    """The optimum, the shape, and a table of the presets at the same compute."""
    shape, law = plan.shape, plan.law
    n_shape = param_count(shape)
    lines = [
        header, "",
        f"Compute-optimal ({law.source()}): N {si(plan.params)} parameters, D {si(plan.tokens)} tokens, "
        f"{ratio(plan.tokens_per_param)} tokens/param.",
        f"Shape: {shape.arch} n_layer={shape.n_layer} n_embd={shape.n_embd} n_head={shape.heads} "
        f"(head_dim {HEAD_DIM}, vocab {shape.vocab_size}): {n_shape:,} params "
        f"({100 * (n_shape / plan.params - 1):+.1f}% of N_opt), {si(plan.shape_tokens)} tokens at seq_len "
        f"{seq_len}, expected val loss {law.loss(n_shape, plan.shape_tokens):.3f} (fitted L(N, D)).",
    ]
    outside = _outside(plan)
    if outside:
        lines.append(outside)
    rows = [_preset_row(plan, preset, seq_len) for preset in presets]
    columns: list[tuple[str, bool, Callable[[tuple], str]]] = [
        ("preset", False, lambda r: r[0].name),
        ("n_layer x n_embd", False, lambda r: f"{r[0].n_layer} x {r[0].n_embd}"),
        ("params", True, lambda r: si(r[1])),
        ("tokens in C", True, lambda r: si(r[2])),
        ("tokens/param", True, lambda r: ratio(r[2] / r[1])),
        ("vs optimal tokens/param", True, lambda r: f"{r[2] / r[1] / plan.tokens_per_param:.2g}x"),
        ("expected loss", True, lambda r: f"{law.loss(r[1], r[2]):.3f}"),
        ("note", False, lambda r: r[3]),
    ]
    table = markdown_table([c[0] for c in columns], [[c[2](row) for c in columns] for row in rows],
                           [c[1] for c in columns])
    return "\n".join(lines) + "\n\nThe presets at the same compute:\n\n" + table


def _preset_row(plan: FitPlan, preset: ModelConfig, seq_len: int) -> tuple[ModelConfig, int, float, str]:
    note = f"vocab {preset.vocab_size} (fit: {plan.shape.vocab_size})" \
        if preset.vocab_size != plan.shape.vocab_size else ""
    return preset, param_count(preset), plan.compute / flops_per_token(preset, seq_len), note
