"""The scaling-law fit's files: fit.json, isoflop.png, frontier.png, and summary.md's
section (the compute-optimal tokens per parameter with its interval, where the data
constrain it, and what they leave open)."""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np

from llm_sweep.core.references import (CHINCHILLA_TOKENS_PER_PARAM, SEED_NON_EMBEDDING_PARAMS,
                                       SEED_TOKENS, SEED_TOKENS_PER_PARAM)
from llm_sweep.report.fit import collect, fit_scaling, points_from_runs
from llm_sweep.report.fit_laws import (Bounds, IsoflopMinimum, LossSurface, Optimum, PowerLaws,
                                       ScalingFit)
from llm_sweep.report.fit_plots import plot_frontier, plot_isoflop
from llm_sweep.report.fit_result import FitResult, LrGrid
from llm_sweep.report.runs import RunRow
from llm_sweep.report.tables import ratio, si

FAR = 10.0  # beyond this factor outside the fitted budgets, an optimum is not quoted
TOTAL = {"seed": SEED_TOKENS_PER_PARAM, "Chinchilla": CHINCHILLA_TOKENS_PER_PARAM}
NON_EMBEDDING = {"seed": SEED_TOKENS / SEED_NON_EMBEDDING_PARAMS}


def _number(value: float) -> str:
    return ratio(value) if abs(value) < 1e6 else f"{value:.3g}"


def _ci(ci: Bounds) -> str:
    return "no interval" if None in ci else f"95% CI {_number(ci[0])} to {_number(ci[1])}"


def _optimum(at: Optimum, references: dict[str, float], unsure: str = "") -> str:
    """Tokens per parameter at one compute, against the references, or why it is not quoted
    (`unsure`: which constant it rests on is not constrained)."""
    if unsure:
        return f"not quoted: {unsure} not constrained"
    if at.outside_range_factor > FAR:
        return f"not quoted: {at.outside_range_factor:.0f}x outside the fitted budgets"
    ratio_ci = at.tokens_per_param.ci
    if not at.tokens_per_param.narrow:
        return f"not constrained ({_ci(ratio_ci)})"
    lo, hi = ratio_ci
    inside = [f"{name} ~{value:.0f} {'inside' if lo <= value <= hi else 'outside'}"
              for name, value in references.items()]
    return (f"{ratio(at.tokens_per_param.value)} ({_ci(ratio_ci)}; N {si(at.n_opt.value)}, "
            f"D {si(at.d_opt)}; {', '.join(inside)})")


def _where(at: Optimum) -> str:
    place = f"{at.label}, C = {at.compute:.3g} FLOPs"
    if at.extrapolation:
        place += f" (extrapolation, {at.outside_range_factor:.1f}x outside the budgets)"
    return place


def _unsure(fit: ScalingFit) -> tuple[str, str]:
    """Why each approach's optimum is not to be quoted: an unconstrained exponent."""
    two, three = fit.approach2, fit.approach3
    return (" and ".join(name for name, value in (("a", two.a), ("b", two.b)) if not value.constrained),
            " and ".join(name for name, value in (("alpha", three.alpha), ("beta", three.beta))
                         if not value.constrained))


def _optima_table(fit: ScalingFit) -> list[str]:
    two, three = fit.approach2.at_compute, fit.approach3.at_compute
    unsure2, unsure3 = _unsure(fit)
    lines = ["| compute | Approach 2 (iso-FLOP minima) | Approach 3 (fitted L(N, D)) |", "| --- | --- | --- |"]
    for i, at in enumerate(three):
        lines.append(f"| {_where(at)} | {_optimum(two[i], TOTAL, unsure2) if two else 'no frontier fit'} | "
                     f"{_optimum(at, TOTAL, unsure3)} |")
    return lines


def _budget_interval(b: IsoflopMinimum) -> str:
    """A budget's tokens/param interval and where ~6 and ~20 fall; flagged when it is wider
    than the value (then it does not constrain the ratio)."""
    ci = b.tokens_per_param.ci
    if b.n_opt.value is None or None in ci:
        return "-"
    lo, hi = ci
    places = ", ".join(f"~{value:.0f} {'inside' if lo <= value <= hi else 'below it' if value < lo else 'above it'}"
                       for value in TOTAL.values())
    wide = "" if b.tokens_per_param.narrow else "; wider than the value: not constrained"
    return f"{_number(lo)} to {_number(hi)} ({places}{wide})"


def _budget_table(minima: Sequence[IsoflopMinimum]) -> list[str]:
    lines = ["| C (FLOPs) | runs | N_opt | D_opt | tokens/param | its 95% CI (seed ~6, Chinchilla ~20) "
             "| min loss | minimum |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for b in minima:
        cells = ["-"] * 5 if b.n_opt.value is None else [
            si(b.n_opt.value), si(b.d_opt), ratio(b.tokens_per_param.value), _budget_interval(b),
            "-" if b.loss_min is None else f"{b.loss_min:.4f}"]
        located = "located" if b.located else f"not located: {b.reason}"
        lines.append("| " + " | ".join([f"{b.compute:.3g}", str(b.runs), *cells, located]) + " |")
    return lines


def _exponents(two: PowerLaws) -> str:
    if two.a.value is None:
        return (f"Only {two.fitted_budgets} budget(s) locate a minimum: no frontier fit "
                "(N_opt ∝ C^a needs two or more).")
    parts = []
    for key, what, exponent in (("a", "N_opt ∝ C^a", two.a), ("b", "D_opt ∝ C^b", two.b)):
        parts.append(f"{what}: {key} = {exponent.value:.3f} ({_ci(exponent.ci)})" if exponent.constrained
                     else f"{what}: {key} not constrained ({_ci(exponent.ci)})")
    failed = f"; {two.bootstrap_failed:.0%} of the bootstrap refits failed" if two.bootstrap_failed else ""
    return "; ".join(parts) + f", from {two.fitted_budgets} located minima{failed}."


def _constants(three: LossSurface) -> str:
    parts = []
    for name, constant in (("E", three.E), ("A", three.A), ("B", three.B), ("alpha", three.alpha),
                           ("beta", three.beta), ("a", three.a)):
        text = (f"{constant.value:.4g} ({_ci(constant.ci)})" if constant.constrained
                else f"not constrained ({_ci(constant.ci)})")
        parts.append(f"{name} {text}")
    return "; ".join(parts) + "."


def lr_grid(rows: Sequence[RunRow]) -> list[LrGrid]:
    """Per budget and shape run at several learning rates: the lrs, the best (lowest mean
    final loss over its seeds) and whether it sits at an edge of the grid, where a better
    one may lie beyond."""
    losses: dict[tuple, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if row.finished:
            losses[(row.budget, row.shape, row.optimizer)][row.lr].append(row.val_loss)
    grids = []
    for (budget, (arch, n_layer, n_embd, _), optimizer), by_lr in sorted(losses.items()):
        if len(by_lr) > 1:
            lrs = sorted(by_lr)
            best = min(lrs, key=lambda lr: np.mean(by_lr[lr]))
            grids.append(LrGrid(budget, f"{n_layer} x {n_embd}", arch, optimizer, tuple(lrs), best,
                                best in (lrs[0], lrs[-1])))
    return grids


def _lr_lines(grids: Sequence[LrGrid]) -> list[str]:
    if not grids:
        return ["No shape was run at several learning rates in one budget: the lr is not checked here."]
    lines = []
    for grid in grids:
        where = ("AT THE EDGE of its grid: a better lr may lie beyond, so this shape's loss may be "
                 "overstated" if grid.at_edge else "inside its grid")
        lines.append(f"- {grid.budget}, {grid.shape} ({grid.arch}, {grid.optimizer}): lr "
                     f"{', '.join(f'{lr:g}' for lr in grid.lrs)}; best {grid.best_lr:g}, {where}")
    return lines


def fit_section(fit: FitResult) -> str:
    """Markdown for summary.md; every number with its interval or the reason it is withheld."""
    inputs, noise = fit.inputs, fit.noise
    grouping = (f"{inputs.groups_from_compute} of them formed by rounding spent compute to the "
                "nearest quarter decade (no budget.flops)" if inputs.groups_from_compute else
                "each a budget.flops value")
    skipped = "; ".join(f"{n} {why}" for why, n in inputs.skipped.items())
    noise_text = (f"Seed-to-seed noise: pooled sd {noise.pooled_sd:.4f}, widest spread "
                  f"{noise.max_spread:.4f} over {noise.repeated_configs} repeated config(s)."
                  if noise.repeated_configs else
                  "No config was run with several seeds: the intervals rest on the scatter between "
                  "sizes alone.")
    non_emb = fit.non_embedding
    lines = [
        "## Scaling laws (Chinchilla Approaches 2 and 3)", "",
        f"{fit.n_runs} finished runs, {inputs.configs} configs in {inputs.groups} compute budgets "
        f"({grouping}), C from {inputs.c_range[0]:.3g} to {inputs.c_range[1]:.3g} FLOPs"
        + (f"; left out: {skipped}" if skipped else "")
        + (f"; {inputs.configs_not_best} config(s) not the best at their size and budget"
           if inputs.configs_not_best else "") + ".",
        noise_text, "",
        f"Compute-optimal tokens per parameter (N = all parameters; {inputs.bootstrap_resamples} "
        "bootstrap resamples):", "", *_optima_table(fit.total), "",
        "### Approach 2: minima of the iso-FLOP curves (isoflop.png, frontier.png)", "",
        *_budget_table(fit.total.approach2.minima), "", _exponents(fit.total.approach2), "",
        "### Approach 3: L(N, D) = E + A/N^alpha + B/D^beta", "", _constants(fit.total.approach3), "",
        "### With N = non-embedding parameters", "",
        "- Approach 2: " + _exponents(non_emb.approach2),
        "- Approach 3: " + _constants(non_emb.approach3),
        *(f"- tokens per non-embedding parameter (Approach 3), {_where(at)}: "
          f"{_optimum(at, NON_EMBEDDING, _unsure(non_emb)[1])}" for at in non_emb.approach3.at_compute),
        f"(The seed's run saw {NON_EMBEDDING['seed']:.1f} tokens per non-embedding parameter; "
        "Chinchilla's ~20 counts all parameters, so it is not compared here.)",
        "", "### Learning rates", "", *_lr_lines(fit.lr_grid or ()),
        "", "Compute is flops_per_token x tokens (6 N plus attention, as MFU counts it). These are "
            "iso-FLOP views: how well each shape learns from a given compute, not how fast it runs.",
    ]
    return "\n".join(lines) + "\n"


def write_fit(rows: Sequence[RunRow], out_dir: Path, summary: Path) -> tuple[Path, ...]:
    """Fit the finished runs, write fit.json and the figures, append the section to
    `summary`; a DataError names what is missing when the runs are too few."""
    written = out_dir / "fit.json", out_dir / "isoflop.png", out_dir / "frontier.png"
    for path in written:  # no stale fit from an earlier report if this one fails
        path.unlink(missing_ok=True)
    points, skipped = points_from_runs(rows)
    fit = replace(fit_scaling(points, skipped=skipped), lr_grid=tuple(lr_grid(rows)))
    (out_dir / "fit.json").write_text(json.dumps(fit.to_json(), indent=2, allow_nan=False) + "\n")
    plot_isoflop(collect(points), fit, out_dir / "isoflop.png")
    plot_frontier(fit, out_dir / "frontier.png")
    summary.write_text(summary.read_text() + "\n" + fit_section(fit))
    return written
