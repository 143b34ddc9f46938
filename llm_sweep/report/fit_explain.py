"""summary.md's words for what a fit constrains and why not: the constants of an L(N, D)
and where its search ended, and Approach 2 against Approach 3 with the parabola's
assumptions that fail in these runs (compare.py)."""
from __future__ import annotations

from typing import Optional

from llm_sweep.scaling.compare import MATERIAL, OFF_CENTRE, WIDE_REACH
from llm_sweep.scaling.estimates import (LARGEST_BUDGET, Bounds, Estimate, IsoflopMinimum, LossSurface, Optimum,
                                       PowerLaws)
from llm_sweep.scaling.fit_record import Comparison, ScalingFit
from llm_sweep.report.tables import ratio

# Measured with scaling.compare.parabola_bias: 7 sizes from x1/8 to x8 around the
# optimum of Chinchilla's law (alpha 0.34, beta 0.28) put the parabola's tokens per
# parameter 6.5% below the law's.
CHINCHILLA_WIDE_BIAS = "about 5-7%"


def number(value: float) -> str:
    return ratio(value) if abs(value) < 1e6 else f"{value:.3g}"


def ci(bounds: Bounds) -> str:
    return "no interval" if None in bounds else f"95% CI {number(bounds[0])} to {number(bounds[1])}"


def _value(estimate: Estimate) -> str:
    return "none" if estimate.value is None else f"{number(estimate.value)} ({ci(estimate.ci)})"


def constants(law: LossSurface) -> str:
    """E, A, B, alpha, beta and a: the value where constrained, else why not."""
    parts = []
    for name in ("E", "A", "B", "alpha", "beta", "a"):
        constant = getattr(law, name)
        text = (f"{constant.value:.4g} ({ci(constant.ci)})" if constant.constrained
                else f"not constrained ({ci(constant.ci)})")
        parts.append(f"{name} {text}")
    return "; ".join(parts) + "."


def search(law: LossSurface, resamples: int) -> str:
    """Where the search ended: bounds hit, refits that failed, its objective."""
    found = law.search
    if not found.box:
        return "(A fit.json of an older report: its search is not recorded.)"
    parts = [f"Search: {found.method}."]
    if found.at_bound:
        parts.append("On a bound in the full fit: " + ", ".join(
            f"{name} on its {side} bound ({_bound(found.box[name], side)})" for name, side in found.at_bound.items())
            + ", so nothing of this fit is constrained (a parameter on a bound constrains nothing).")
    crowded = [f"{name} {share:.0%}" for name, share in found.resamples_at_bound.items() if share > 0]
    if crowded:
        parts.append("Refits on a bound: " + ", ".join(crowded) + ".")
    if found.bootstrap_failed_refits:
        parts.append(f"{found.bootstrap_failed_refits} of {resamples} refits failed (no start converged).")
    if found.objective is not None:
        parts.append(f"Objective {found.objective:.6g} (Huber in units of delta on the log-residuals).")
    return " ".join(parts)


def _bound(box: Bounds, side: str) -> str:
    value = box[0 if side == "lower" else 1]
    return "none" if value is None else f"{value:.3g}"


def exponents(two: PowerLaws, resamples: int) -> str:
    if two.a.value is None:
        return (f"Only {two.fitted_budgets} budget(s) locate a minimum: no frontier fit "
                "(N_opt ∝ C^a needs two or more).")
    parts = []
    for key, what, exponent in (("a", "N_opt ∝ C^a", two.a), ("b", "D_opt ∝ C^b", two.b)):
        parts.append(f"{what}: {key} = {exponent.value:.3f} ({ci(exponent.ci)})" if exponent.constrained
                     else f"{what}: {key} not constrained: {exponent.reason} ({ci(exponent.ci)})" if exponent.reason
                     else f"{what}: {key} not constrained ({ci(exponent.ci)})")
    failed = (f"; {two.bootstrap_failed_refits} of {resamples} bootstrap refits failed (a budget's minimum "
              "missing or outside its sizes)" if two.bootstrap_failed_refits else "")
    return "; ".join(parts) + f", from {two.fitted_budgets} located minima{failed}."


def _worst(fit: ScalingFit, key) -> tuple[int, IsoflopMinimum]:
    """The located budget where `key` is largest, and its index."""
    located = [(j, m) for j, m in enumerate(fit.approach2.minima) if m.located and m.position is not None]
    return max(located, key=lambda found: key(found[1]))


def _shift(found: Comparison, j: int, what: str) -> str:
    """The fitted law's parabola bias at budget j as run and with `what` undone."""
    as_is, centred, narrow = (found.parabola_bias[j], found.parabola_bias_centred[j], found.parabola_bias_narrow[j])
    if as_is is None:
        return ""
    undone = {"centred": centred, "narrow": narrow}[what]
    label = {"centred": "with the same sizes centred on the optimum", "narrow": "with them pulled halfway in"}[what]
    return f"; on the fitted law, the parabola's tokens/param is off by {as_is:+.1%} as run, {undone:+.1%} {label}"


def _causes(fit: ScalingFit, found: Comparison) -> list[str]:
    lines = []
    if "grid width" in found.causes:
        j, m = _worst(fit, lambda m: m.reach)
        lines.append(f"- grid width: sizes reach {m.reach:.3g}x from the vertex at C = {m.compute:.3g} (the "
                     f"parabola holds within about {WIDE_REACH:g}x){_shift(found, j, 'narrow')}.")
    if "off-centre grid" in found.causes:
        j, m = _worst(fit, lambda m: abs(m.position - 0.5))
        lines.append(f"- off-centre grid: the vertex sits at {m.position:.2f} of its budget's range of ln N at "
                     f"C = {m.compute:.3g} (0.5 is centred; off-centre outside {OFF_CENTRE:g} to "
                     f"{1 - OFF_CENTRE:g}){_shift(found, j, 'centred')}.")
    if "alpha != beta" in found.causes:
        j, _ = _worst(fit, lambda m: m.compute)
        lines.append(f"- alpha != beta: alpha - beta = {_value(found.alpha_minus_beta)}, so the iso-FLOP curve "
                     f"is asymmetric in ln N{_shift(found, j, 'centred')}.")
    return lines


def _bias(fit: ScalingFit, found: Comparison) -> Optional[str]:
    shifts = [f"{bias:+.1%} at C = {m.compute:.3g}" for m, bias in zip(fit.approach2.minima, found.parabola_bias)
              if bias is not None]
    if not shifts:
        return None
    law = fit.law
    caveat = "" if law.alpha.constrained and law.beta.constrained else (
        " (from a law that is itself not constrained: a rough guide, and alpha != beta is not judged)")
    return ("On the fitted law's own iso-FLOP curves at the sizes run, the parabola moves tokens per parameter "
            f"by {', '.join(shifts)}{caveat}.")


def _largest(optima: tuple[Optimum, ...]) -> bool:
    """Whether the largest budget's optimum is constrained."""
    return any(at.constrained for at in optima if at.label == LARGEST_BUDGET)


def _quoted(estimate: Estimate, constrained: bool) -> str:
    """A value with its interval where constrained; else only the interval."""
    return f"= {_value(estimate)}" if constrained else f"not constrained ({ci(estimate.ci)})"


def comparison(fit: ScalingFit) -> list[str]:
    """Approach 2 against Approach 3 (variable projection) at the largest budget."""
    found = fit.comparison
    if found is None:
        return ["(A fit.json of an older report: no comparison recorded.)"]
    ratio2, ratio3 = (_largest(optima) for optima in (fit.approach2.at_compute, fit.law.at_compute))
    lines = [f"At the largest budget (C = {found.compute:.3g} FLOPs), Approach 2 gives tokens/param "
             f"{_quoted(found.tokens_per_param_2, ratio2)} and a {_quoted(found.a_2, fit.approach2.a.constrained)}; "
             f"Approach 3 (variable projection) gives tokens/param {_quoted(found.tokens_per_param_3, ratio3)} and "
             f"a {_quoted(found.a_3, fit.law.a.constrained)}."]
    named = ", ".join(found.causes)
    if found.disagree:
        lines.append("They disagree beyond their intervals. " + (
            f"Of the parabola's assumptions, these fail in these runs and explain it: {named}." if named else
            "None of the parabola's assumptions checked here fails (grid width, off-centre grid, "
            "alpha != beta): the form of L(N, D) itself is in question."))
    elif found.disagree is None:
        lines.append("An interval is missing: they are compared by value only."
                     + (f" Of the parabola's assumptions, these fail in these runs: {named}." if named else ""))
    else:
        lines.append("Their intervals overlap." + (
            f" Of the parabola's assumptions, these fail in these runs all the same: {named}." if named else ""))
    lines += ["", *_causes(fit, found), "",
              f"(An assumption fails when the runs show it: a vertex outside the middle half of its sizes, "
              f"sizes more than {WIDE_REACH:g}x from it, an interval of alpha - beta that excludes 0; and, on a "
              f"constrained law, it moves tokens per parameter by {MATERIAL:.0%} or more.)"]
    bias = _bias(fit, found)
    lines += ["", *([bias] if bias else []),
              "A parabola in ln N fits an iso-FLOP curve exactly only when the curve is symmetric (alpha = "
              "beta) and its sizes are centred on the minimum. (For orientation only: on a grid centred on the "
              f"minimum from x1/8 to x8, Chinchilla's asymmetric curve biases it by {CHINCHILLA_WIDE_BIAS}; "
              "this study's own grid's bias is the line above.) The estimate printed for Approach 2 is the "
              "parabola's own, bias included; its interval is corrected for the bias: each bootstrap refit's "
              "error is measured against the fitted law's exact optimum, so the interval moves by what these "
              "sizes do to the parabola on that law. Approach 3 fits the curve itself and has no such bias."]
    return lines
