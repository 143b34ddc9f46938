"""The scaling-law fit's files: fit.json, isoflop.png, frontier.png, and summary.md's
section (the compute-optimal tokens per parameter with its interval, where the data
constrain it, the rule that decides that, what the data leave open, and how the two
approaches compare)."""
from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from llm_sweep.core.references import (CHINCHILLA_TOKENS_PER_PARAM, SEED_NON_EMBEDDING_PARAMS,
                                       SEED_TOKENS, SEED_TOKENS_PER_PARAM)
from llm_sweep.scaling.fit import fit_scaling
from llm_sweep.scaling.points import RunPoint, collect
from llm_sweep.report.fit_explain import ci, comparison, constants, exponents, number, search
from llm_sweep.scaling.estimates import IsoflopMinimum, Optimum
from llm_sweep.report.fit_plots import plot_frontier, plot_isoflop
from llm_sweep.scaling.fit_record import FitResult, LrGrid, ScalingFit
from llm_sweep.scaling.rules import FAR, RULE
from llm_sweep.report.learning_rates import lr_curves, lr_fairness
from llm_sweep.report.rows import ConfigKey, RunRow, by_seed
from llm_sweep.report.tables import ratio, si

TOTAL = {"seed": SEED_TOKENS_PER_PARAM, "Chinchilla": CHINCHILLA_TOKENS_PER_PARAM}
NON_EMBEDDING = {"seed": SEED_TOKENS / SEED_NON_EMBEDDING_PARAMS}


def _optimum(at: Optimum, references: dict[str, float]) -> str:
    """Tokens per parameter at one compute, against the references, or why it is not quoted."""
    if not at.constrained:
        return f"not constrained: {at.reason} ({ci(at.tokens_per_param.ci)})"
    if at.outside_range_factor > FAR:
        return f"not quoted: {at.outside_range_factor:.0f}x outside the fitted budgets"
    lo, hi = at.tokens_per_param.ci
    inside = [f"{name} ~{value:.0f} {'inside' if lo <= value <= hi else 'outside'}"
              for name, value in references.items()]
    return (f"{ratio(at.tokens_per_param.value)} ({ci(at.tokens_per_param.ci)}; N {si(at.n_opt.value)}, "
            f"D {si(at.d_opt)}; {', '.join(inside)})")


def _where(at: Optimum) -> str:
    place = f"{at.label}, C = {at.compute:.3g} FLOPs"
    if at.extrapolation:
        place += f" (extrapolation, {at.outside_range_factor:.3g}x outside the budgets)"
    return place


def _optima_table(fit: ScalingFit) -> list[str]:
    two, three = fit.approach2.at_compute, fit.law.at_compute
    lines = ["| compute | Approach 2 (iso-FLOP minima) | Approach 3 (fitted L(N, D), variable projection) |",
             "| --- | --- | --- |"]
    for i, at in enumerate(three):
        lines.append(f"| {_where(at)} | {_optimum(two[i], TOTAL) if two else 'no frontier fit'} | "
                     f"{_optimum(at, TOTAL)} |")
    return lines


def _budget_interval(b: IsoflopMinimum) -> str:
    """A budget's tokens/param interval and where ~6 and ~20 fall; flagged when it is not
    constrained (and why)."""
    bounds = b.tokens_per_param.ci
    if b.n_opt.value is None or None in bounds:
        return "-"
    lo, hi = bounds
    places = ", ".join(f"~{value:.0f} {'inside' if lo <= value <= hi else 'below it' if value < lo else 'above it'}"
                       for value in TOTAL.values())
    loose = f"; not constrained: {b.tokens_per_param_reason}" if b.tokens_per_param_reason else ""
    return f"{number(lo)} to {number(hi)} ({places}{loose})"


def _budget_table(minima: Sequence[IsoflopMinimum], resamples: int) -> list[str]:
    lines = ["| C (FLOPs) | runs | N_opt | D_opt | tokens/param | its 95% CI (seed ~6, Chinchilla ~20) "
             "| min loss | vertex among the sizes (0 to 1) | refits without a minimum inside | minimum |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for b in minima:
        cells = ["-"] * 5 if b.n_opt.value is None else [
            si(b.n_opt.value), si(b.d_opt), ratio(b.tokens_per_param.value), _budget_interval(b),
            "-" if b.loss_min is None else f"{b.loss_min:.4f}"]
        place = "-" if b.position is None else f"{b.position:.2f}"
        located = "located" if b.located else f"not located: {b.reason}"
        lines.append("| " + " | ".join([f"{b.compute:.3g}", str(b.runs), *cells, place,
                                        f"{b.bootstrap_failed} of {resamples}", located]) + " |")
    return lines


def _non_embedding(fit: FitResult) -> list[str]:
    non_emb, resamples = fit.non_embedding, fit.inputs.bootstrap_resamples
    return [
        "- Approach 2: " + exponents(non_emb.approach2, resamples),
        *(["- Approach 3 (variable projection): " + constants(non_emb.approach3_varpro) + " "
            + search(non_emb.approach3_varpro, resamples)] if non_emb.approach3_varpro is not None else []),
        "- Approach 3 (L-BFGS): " + constants(non_emb.approach3) + " " + search(non_emb.approach3, resamples),
        *(f"- tokens per non-embedding parameter (Approach 3), {_where(at)}: {_optimum(at, NON_EMBEDDING)}"
          for at in non_emb.law.at_compute),
        f"(The seed's run saw {NON_EMBEDDING['seed']:.1f} tokens per non-embedding parameter; "
        "Chinchilla's ~20 counts all parameters, so it is not compared here.)",
    ]


def _approach3(fit: ScalingFit, resamples: int) -> list[str]:
    how = "Variable projection" if fit.approach3_varpro is not None else "L-BFGS (an older report's only search)"
    lines = [f"{how} (the law used above and by `plan --fit`): " + constants(fit.law), "",
             search(fit.law, resamples), ""]
    if fit.approach3_varpro is not None:
        lines += ["L-BFGS on all five parameters, as Chinchilla fitted it: " + constants(fit.approach3), "",
                  search(fit.approach3, resamples), ""]
    return lines


RERUNS = "reruns of a seed (averaged into its point)"


def points_from_runs(rows: Sequence[RunRow]) -> tuple[list[RunPoint], dict[str, int]]:
    """The runs a fit can use, one point per seed of a config (reruns of a seed averaged:
    rows.by_seed), and how many runs were left out and why."""
    skipped: dict[str, int] = defaultdict(int)
    configs: dict[ConfigKey, list[RunRow]] = defaultdict(list)
    for row in rows:
        if not row.finished:
            skipped["not finished"] += 1
        elif row.tokens is None or row.flops is None:
            skipped["no tokens or compute logged"] += 1
        else:
            configs[row.config_key].append(row)
    mean = lambda runs, name: statistics.fmean(getattr(run, name) for run in runs)
    points = [RunPoint(runs[0].params, runs[0].non_embedding_params, mean(runs, "tokens"), mean(runs, "flops"),
                       mean(runs, "val_loss"), runs[0].flops_budget, key)
              for key, config in configs.items() for runs in by_seed(config)]
    reruns = sum(len(config) for config in configs.values()) - len(points)
    if reruns:
        skipped[RERUNS] = reruns
    return points, dict(skipped)


def lr_grid(rows: Sequence[RunRow]) -> list[LrGrid]:
    """Per budget and shape run at several learning rates: the lrs, the best (lowest mean
    final loss over its seeds) and whether it sits at an edge of the grid, where a better
    one may lie beyond."""
    return [LrGrid(curve.budget, f"{curve.n_layer} x {curve.n_embd}", curve.arch, curve.optimizer,
                   tuple(p.lr for p in curve.points), curve.best.lr, curve.at_edge)
            for curve in lr_curves(rows, min_lrs=2)]


def study_learning_rates(rows: Sequence[RunRow]) -> list[str]:
    """How the study set each point's learning rate (a point: one shape at one budget)."""
    points: dict[str, list[RunRow]] = defaultdict(list)
    for row in rows:
        if row.finished:
            points[f"{row.n_layer}x{row.n_embd} at {row.budget}"].append(row)
    fairness = lr_fairness(points)
    return [] if fairness is None else [f"How the learning rates were set (each shape at each budget "
                                        f"counts as one shape): {fairness.text}"]


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


def fit_section(fit: FitResult, learning_rates: Sequence[str] = ()) -> str:
    """Markdown for summary.md; every number with its interval or the reason it is withheld."""
    inputs, noise, resamples = fit.inputs, fit.noise, fit.inputs.bootstrap_resamples
    grouping = (f"{inputs.groups_from_compute} of them formed by rounding spent compute to the "
                "nearest quarter decade (no budget.flops)" if inputs.groups_from_compute else
                "each a budget.flops value")
    skipped = "; ".join(f"{n} {why}" for why, n in inputs.skipped.items())
    low, high = noise.pooled_sd_ci
    noise_text = (f"Seed-to-seed noise: pooled sd {noise.pooled_sd:.4f} (95% interval {low:.4f} to {high:.4f}, "
                  f"{noise.dof} degrees of freedom), widest spread {noise.max_spread:.4f} over "
                  f"{noise.repeated_configs} repeated config(s)."
                  if noise.repeated_configs and low is not None else
                  "No config was run with several seeds: the intervals rest on the scatter between "
                  "sizes alone.")
    if noise.scatter is not None:
        times = (f" ({noise.scatter / noise.pooled_sd:.1f}x the seed noise; {noise.scatter / high:.1f}x to "
                 f"{noise.scatter / low:.1f}x over that noise's interval)") if noise.pooled_sd and low else ""
        noise_text += (f" The configs scatter around the fitted L(N, D) by sd {noise.scatter:.4f}{times}: "
                       "the intervals below rest on that scatter.")
    rule = (fit.rule.text() if fit.rule else "These flags follow an older rule (an interval narrower than "
            "its value). The current rule: " + RULE.text())
    lines = [
        "## Scaling laws (Chinchilla Approaches 2 and 3)", "",
        f"{fit.n_runs} finished runs, {inputs.configs} configs in {inputs.groups} compute budgets "
        f"({grouping}), C from {inputs.c_range[0]:.3g} to {inputs.c_range[1]:.3g} FLOPs"
        + (f"; left out: {skipped}" if skipped else "")
        + (f"; {inputs.configs_not_best} config(s) not the best at their size and budget"
           if inputs.configs_not_best else "") + ".",
        noise_text, "", rule, f"Optima more than {FAR:g}x outside the fitted budgets are not quoted.", "",
        f"Compute-optimal tokens per parameter (N = all parameters; {resamples} bootstrap resamples):", "",
        *_optima_table(fit.total), "",
        "### Approach 2 against Approach 3", "", *comparison(fit.total), "",
        "### Approach 2: minima of the iso-FLOP curves (isoflop.png, frontier.png)", "",
        *_budget_table(fit.total.approach2.minima, resamples), "", exponents(fit.total.approach2, resamples), "",
        "### Approach 3: L(N, D) = E + A/N^alpha + B/D^beta", "", *_approach3(fit.total, resamples),
        "### With N = non-embedding parameters", "", *_non_embedding(fit),
        "", "### Learning rates", "", *_lr_lines(fit.lr_grid or ()), "", *learning_rates,
        "", "Compute is flops_per_token x tokens (6 N plus attention, as MFU counts it). These are "
            "iso-FLOP views: how well each shape learns from a given compute, not how fast it runs.",
    ]
    text = "\n".join(lines)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text + "\n"


def write_fit(rows: Sequence[RunRow], out_dir: Path) -> tuple[FitResult, str, tuple[Path, ...]]:
    """Fit the finished runs, write fit.json and the figures; the fit and its section of
    summary.md (report/write.py writes that file). A DataError names what is missing when
    the runs are too few."""
    written = out_dir / "fit.json", out_dir / "isoflop.png", out_dir / "frontier.png"
    for path in written:  # no stale fit from an earlier report if this one fails
        path.unlink(missing_ok=True)
    points, skipped = points_from_runs(rows)
    fit = replace(fit_scaling(points, skipped=skipped), lr_grid=tuple(lr_grid(rows)))
    (out_dir / "fit.json").write_text(fit.dumps())
    plot_isoflop(collect(points), fit, out_dir / "isoflop.png")
    plot_frontier(fit, out_dir / "frontier.png")
    return fit, fit_section(fit, study_learning_rates(rows)), written
