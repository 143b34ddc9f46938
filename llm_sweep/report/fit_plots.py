"""The scaling-law figures: isoflop.png (final loss against model size, one curve per
compute budget, with Approach 2's parabolas) and frontier.png (the compute-optimal
model size, tokens and tokens per parameter against compute, with the seed's run and
Chinchilla's 20 tokens per parameter). A fitted frontier is drawn as far as the summary
quotes it: up to FAR x outside the fitted budgets where its exponents are constrained,
only across the budgets where they are not."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from llm_sweep.core.references import (CHINCHILLA_TOKENS_PER_PARAM, SEED_COMPUTE, SEED_PARAMS,
                                       SEED_TOKENS)
from llm_sweep.scaling.points import Data
from llm_sweep.scaling.approach2 import budget_minimum
from llm_sweep.scaling.estimates import Bounds, IsoflopMinimum
from llm_sweep.scaling.fit_record import FitResult
from llm_sweep.scaling.rules import FAR
from llm_sweep.scaling.surface import surface_optimum
from llm_sweep.report.plots import _figure
from llm_sweep.report.tables import si

MARGIN = 0.15  # how far (in ln N) a parabola is drawn past its budget's runs


def _isoflop_panel(ax: Axes, data: Data, sizes: np.ndarray, minima: Sequence[IsoflopMinimum],
                   what: str) -> None:
    loss = data.loss
    for j, (budget, found) in enumerate(zip(data.budgets, minima)):
        colour = f"C{j % 10}"
        ln_n, y = np.log(sizes[budget.members]), loss[budget.members]
        ax.plot(np.exp(ln_n), y, "o", color=colour, label=f"C = {budget.compute:.3g} FLOPs ({len(y)} runs)")
        coef, _, _ = budget_minimum(ln_n, y)
        if coef is not None:
            grid = np.linspace(ln_n.min() - MARGIN, ln_n.max() + MARGIN, 100)
            ax.plot(np.exp(grid), np.polyval(coef, grid), "-", color=colour, alpha=0.7)
        if found.n_opt.value is not None and found.loss_min is not None:
            ax.plot([found.n_opt.value], [found.loss_min], "*", markersize=13, color=colour,
                    markerfacecolor=colour if found.located else "none")
    ax.set_xscale("log")
    ax.set_xlabel(what)
    ax.set_ylabel("final val loss (nats/token)")
    ax.set_title(f"Iso-FLOP curves vs {what}\n(star: fitted minimum; hollow: not located)")
    ax.legend(fontsize=7)


def plot_isoflop(data: Data, fit: FitResult, path: Path) -> None:
    figure, axes = _figure(2)
    _isoflop_panel(axes[0], data, data.params, fit.total.approach2.minima, "parameters")
    _isoflop_panel(axes[1], data, data.non_embedding_params, fit.non_embedding.approach2.minima,
                   "non-embedding parameters")
    figure.savefig(path)


def _errors(values: Sequence[Optional[float]], cis: Sequence[Bounds]) -> np.ndarray:
    """Asymmetric error bars from intervals; zero where an interval is missing."""
    return np.array([[v - lo, hi - v] if v is not None and None not in (lo, hi) else [0.0, 0.0]
                     for v, (lo, hi) in zip(values, cis)]).T.clip(min=0)


def _reach(c_lo: float, c_hi: float, constrained: bool) -> np.ndarray:
    """The computes a frontier is drawn at: FAR x beyond the budgets when constrained."""
    far = FAR if constrained else 1.0
    return np.logspace(np.log10(c_lo / far), np.log10(c_hi * far), 100)


def _minima(sizes: Axes, ratios: Axes, minima: Sequence[IsoflopMinimum]) -> None:
    for b in (b for b in minima if b.n_opt.value is not None):
        face = {} if b.located else {"markerfacecolor": "none"}
        sizes.errorbar([b.compute], [b.n_opt.value], yerr=_errors([b.n_opt.value], [b.n_opt.ci]), fmt="o",
                       color="C0", **face)
        sizes.plot([b.compute], [b.d_opt], "s", color="C1", **face)
        ratios.errorbar([b.compute], [b.tokens_per_param.value], fmt="o", color="C0", **face,
                        yerr=_errors([b.tokens_per_param.value], [b.tokens_per_param.ci]))


def _seed(sizes: Axes, ratios: Axes, c_lo: float, c_hi: float) -> str:
    """The seed's run where it lies within FAR x of the budgets; else a note on why not."""
    if not c_lo / FAR <= SEED_COMPUTE <= c_hi * FAR:
        return (f"\n(seed run, C = {SEED_COMPUTE:.3g}: {SEED_COMPUTE / c_hi:.3g}x beyond the budgets, "
                "not drawn)")
    sizes.plot([SEED_COMPUTE], [SEED_PARAMS], "*", color="C0", markersize=14, markeredgecolor="k",
               label=f"seed run: {si(SEED_PARAMS)} params")
    sizes.plot([SEED_COMPUTE], [SEED_TOKENS], "*", color="C1", markersize=14, markeredgecolor="k",
               label=f"seed run: {si(SEED_TOKENS)} tokens")
    ratios.plot([SEED_COMPUTE], [SEED_TOKENS / SEED_PARAMS], "*", color="tab:green", markersize=14,
                markeredgecolor="k", label=f"seed run: {SEED_TOKENS / SEED_PARAMS:.1f} tokens/param")
    return ""


def plot_frontier(fit: FitResult, path: Path) -> Figure:
    """Left: N_opt and D_opt against C. Right: D_opt / N_opt against C. Returns the figure."""
    two, three, per_token = fit.total.approach2, fit.total.law, fit.total.flops_per_token
    ln_k = per_token.ln
    c_lo, c_hi = two.minima[0].compute, two.minima[-1].compute
    figure, (sizes, ratios) = _figure(2)
    _minima(sizes, ratios, two.minima)
    quoted2 = two.a.constrained and two.b.constrained
    quoted3 = three.alpha.constrained and three.beta.constrained and three.a.constrained
    if two.a.value is not None:
        c_grid = _reach(c_lo, c_hi, quoted2)
        n_line = two.n_opt_coefficient * c_grid ** two.a.value
        d_line = two.d_opt_coefficient * c_grid ** two.b.value
        sizes.plot(c_grid, n_line, "-", color="C0", label=f"N_opt, Approach 2 (a = {two.a.value:.3f})")
        sizes.plot(c_grid, d_line, "-", color="C1", label=f"D_opt, Approach 2 (b = {two.b.value:.3f})")
        ratios.plot(c_grid, d_line / n_line, "-", color="C0", label="Approach 2")
    if three.fitted:
        c_grid = _reach(c_lo, c_hi, quoted3)
        n_surface = np.exp(surface_optimum(three.theta, np.log(c_grid), ln_k))
        sizes.plot(c_grid, n_surface, "--", color="C0", label="N_opt, Approach 3")
        sizes.plot(c_grid, per_token.tokens(c_grid, n_surface), "--", color="C1", label="D_opt, Approach 3")
        ratios.plot(c_grid, per_token.tokens(c_grid, n_surface) / n_surface, "--", color="C2",
                    label="Approach 3")
    # Chinchilla's rule, D = 20 N, under this compute count, as far as either frontier is drawn.
    c_grid = _reach(c_lo, c_hi, quoted2 or quoted3)
    n_rule = (c_grid / (CHINCHILLA_TOKENS_PER_PARAM * per_token.coefficient)) ** (1 / (ln_k[1] + 1))
    sizes.plot(c_grid, n_rule, ":", color="gray", label="N and D at 20 tokens/param")
    sizes.plot(c_grid, CHINCHILLA_TOKENS_PER_PARAM * n_rule, ":", color="gray")
    ratios.axhline(CHINCHILLA_TOKENS_PER_PARAM, color="gray", linestyle=":", label="Chinchilla ~20")
    seed_note = _seed(sizes, ratios, c_lo, c_hi)
    for ax in (sizes, ratios):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training compute C (FLOPs)")
        ax.legend(fontsize=7)
    sizes.set_ylabel("parameters (circles) / tokens (squares)")
    sizes.set_title("Compute-optimal model size and tokens\n(error bars: 95% bootstrap; hollow: not located)"
                    + seed_note, fontsize=9)
    ratios.set_ylabel("tokens per parameter at the optimum")
    ratios.yaxis.set_major_formatter(lambda y, _: f"{y:g}")
    ratios.yaxis.set_minor_formatter(lambda y, _: f"{y:g}" if str(round(y))[0] in "25" else "")
    ratios.set_title(f"Compute-optimal tokens per parameter\n(lines: as far as quoted, {FAR:g}x beyond the "
                     "budgets where constrained)", fontsize=9)
    figure.savefig(path)
    return figure
