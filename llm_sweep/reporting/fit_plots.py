"""The scaling-law figures: isoflop.png (final loss against model size, one curve per
compute budget, with Approach 2's parabolas) and frontier.png (the compute-optimal
model size, tokens and tokens per parameter against compute, with the seed's run and
Chinchilla's 20 tokens per parameter)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.axes import Axes

from llm_sweep.references import CHINCHILLA_TOKENS_PER_PARAM
from llm_sweep.reporting.fit import (SEED_COMPUTE, SEED_PARAMS, SEED_TOKENS, Data, budget_minimum,
                                     surface_optimum)
from llm_sweep.reporting.plots import _figure
from llm_sweep.reporting.tables import si

MARGIN = 0.15  # how far (in ln N) a parabola is drawn past its budget's runs


def _isoflop_panel(ax: Axes, data: Data, sizes: np.ndarray, budgets: list[dict], what: str) -> None:
    loss = data.loss
    for j, (budget, found) in enumerate(zip(data.budgets, budgets)):
        colour = f"C{j % 10}"
        ln_n, y = np.log(sizes[budget.members]), loss[budget.members]
        ax.plot(np.exp(ln_n), y, "o", color=colour, label=f"C = {budget.compute:.3g} FLOPs ({len(y)} runs)")
        coef, _, _ = budget_minimum(ln_n, y)
        if coef is not None:
            grid = np.linspace(ln_n.min() - MARGIN, ln_n.max() + MARGIN, 100)
            ax.plot(np.exp(grid), np.polyval(coef, grid), "-", color=colour, alpha=0.7)
        if found["N_opt"] is not None and found["loss_min"] is not None:
            ax.plot([found["N_opt"]], [found["loss_min"]], "*", markersize=13, color=colour,
                    markerfacecolor=colour if found["constrained"] else "none")
    ax.set_xscale("log")
    ax.set_xlabel(what)
    ax.set_ylabel("final val loss (nats/token)")
    ax.set_title(f"Iso-FLOP curves vs {what}\n(star: fitted minimum; hollow: not located)")
    ax.legend(fontsize=7)


def plot_isoflop(data: Data, fit: dict, path: Path) -> None:
    figure, axes = _figure(2)
    _isoflop_panel(axes[0], data, data.params, fit["approach2"]["budgets"], "parameters")
    _isoflop_panel(axes[1], data, data.non_embedding_params, fit["non_embedding"]["approach2"]["budgets"],
                   "non-embedding parameters")
    figure.savefig(path)


def _errors(values: list, cis: list) -> np.ndarray:
    """Asymmetric error bars from intervals; zero where an interval is missing."""
    return np.array([[v - lo, hi - v] if v is not None and None not in (lo, hi) else [0.0, 0.0]
                     for v, (lo, hi) in zip(values, cis)]).T.clip(min=0)


def plot_frontier(fit: dict, path: Path) -> None:
    """Left: N_opt and D_opt against C. Right: D_opt / N_opt against C."""
    two, three, per_token = fit["approach2"], fit["approach3"], fit["flops_per_token"]
    budgets = [b for b in two["budgets"] if b["N_opt"] is not None]
    ln_k = np.array([np.log(per_token["coefficient"]), per_token["exponent"]])
    c_all = [b["C"] for b in two["budgets"]] + [SEED_COMPUTE]
    c_grid = np.logspace(np.log10(min(c_all)) - 0.3, np.log10(max(c_all)) + 0.3, 100)
    d_of = lambda n, c: c / (per_token["coefficient"] * n ** per_token["exponent"])
    figure, (sizes, ratios) = _figure(2)
    for b in budgets:
        face = {} if b["constrained"] else {"markerfacecolor": "none"}
        sizes.errorbar([b["C"]], [b["N_opt"]], yerr=_errors([b["N_opt"]], [b["N_opt_ci"]]), fmt="o",
                       color="C0", **face)
        sizes.plot([b["C"]], [b["D_opt"]], "s", color="C1", **face)
        ratios.errorbar([b["C"]], [b["tokens_per_param"]], fmt="o", color="C0", **face,
                        yerr=_errors([b["tokens_per_param"]], [b["tokens_per_param_ci"]]))
    if two["a"] is not None:
        n_line, d_line = two["N_opt_coefficient"] * c_grid ** two["a"], two["D_opt_coefficient"] * c_grid ** two["b"]
        sizes.plot(c_grid, n_line, "-", color="C0", label=f"N_opt, Approach 2 (a = {two['a']:.3f})")
        sizes.plot(c_grid, d_line, "-", color="C1", label=f"D_opt, Approach 2 (b = {two['b']:.3f})")
        ratios.plot(c_grid, d_line / n_line, "-", color="C0", label="Approach 2")
    theta = np.array([np.log(three["A"]), np.log(three["B"]), np.log(three["E"]), three["alpha"], three["beta"]])
    n_surface = np.exp(surface_optimum(theta, np.log(c_grid), ln_k))
    sizes.plot(c_grid, n_surface, "--", color="C0", label="N_opt, Approach 3")
    sizes.plot(c_grid, d_of(n_surface, c_grid), "--", color="C1", label="D_opt, Approach 3")
    ratios.plot(c_grid, d_of(n_surface, c_grid) / n_surface, "--", color="C2", label="Approach 3")
    # Chinchilla's rule, D = 20 N, under this compute count.
    n_rule = (c_grid / (CHINCHILLA_TOKENS_PER_PARAM * per_token["coefficient"])) ** (1 / (ln_k[1] + 1))
    sizes.plot(c_grid, n_rule, ":", color="gray", label="N and D at 20 tokens/param")
    sizes.plot(c_grid, CHINCHILLA_TOKENS_PER_PARAM * n_rule, ":", color="gray")
    ratios.axhline(CHINCHILLA_TOKENS_PER_PARAM, color="gray", linestyle=":", label="Chinchilla ~20")
    sizes.plot([SEED_COMPUTE], [SEED_PARAMS], "*", color="C0", markersize=14, markeredgecolor="k",
               label=f"seed run: {si(SEED_PARAMS)} params")
    sizes.plot([SEED_COMPUTE], [SEED_TOKENS], "*", color="C1", markersize=14, markeredgecolor="k",
               label=f"seed run: {si(SEED_TOKENS)} tokens")
    ratios.plot([SEED_COMPUTE], [SEED_TOKENS / SEED_PARAMS], "*", color="tab:green", markersize=14,
                markeredgecolor="k", label=f"seed run: {SEED_TOKENS / SEED_PARAMS:.1f} tokens/param")
    for ax in (sizes, ratios):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training compute C (FLOPs)")
        ax.legend(fontsize=7)
    sizes.set_ylabel("parameters (circles) / tokens (squares)")
    sizes.set_title("Compute-optimal model size and tokens\n(error bars: 95% bootstrap; hollow: not located)")
    ratios.set_ylabel("tokens per parameter at the optimum")
    ratios.yaxis.set_major_formatter(lambda y, _: f"{y:g}")
    ratios.yaxis.set_minor_formatter(lambda y, _: f"{y:g}" if str(round(y))[0] in "25" else "")
    ratios.set_title("Compute-optimal tokens per parameter")
    figure.savefig(path)
