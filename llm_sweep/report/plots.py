"""The report's PNG figures. Each function draws one file and returns False, writing
nothing, when no run qualifies for it."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from llm_sweep.core.references import CHINCHILLA_TOKENS_PER_PARAM, SEED_TOKENS_PER_PARAM
from llm_sweep.report.analysis import OptimizerScale, ShapeSeries
from llm_sweep.report.configs import ConfigResult
from llm_sweep.report.learning_rates import LrCurve
from llm_sweep.report.rows import RunRow
from llm_sweep.report.tables import ratio, si

MAX_CURVES = 12  # more lines than this make an unreadable legend
TIME_UNITS = (("s", 1, 300), ("min", 60, 300 * 60), ("h", 3600, float("inf")))  # unit, seconds, up to


def _figure(panels: int) -> tuple[Figure, list[Axes]]:
    # A Figure with the Agg canvas, not pyplot: no global backend, no GUI, thread-safe.
    figure = Figure(figsize=(6.5 * panels, 4.5), dpi=110, layout="constrained")
    axes = figure.subplots(1, panels, squeeze=False)[0]
    for ax in axes:
        ax.grid(alpha=0.3)
    return figure, list(axes)


def _series(ax: Axes, configs: Sequence[ConfigResult], label: str, style: str) -> None:
    ax.plot([c.best.params for c in configs], [c.loss for c in configs], style, label=label)
    for config in configs:
        ax.annotate(f"{config.best.n_layer}x{config.best.n_embd}", (config.best.params, config.loss),
                    textcoords="offset points", xytext=(4, 4), fontsize=7)


def plot_loss_vs_params(series: Optional[ShapeSeries], budget: Optional[str], path: Path) -> bool:
    """The "go wider" picture: both series start at the reference shape."""
    if series is None or not (series.wider or series.deeper):
        return False
    ref = series.reference
    figure, (ax,) = _figure(1)
    if series.wider:
        _series(ax, (ref, *series.wider), f"wider (n_layer={ref.best.n_layer})", "o-")
    if series.deeper:
        _series(ax, (ref, *series.deeper), f"deeper (n_embd={ref.best.n_embd})", "s-")
    if series.other:
        _series(ax, series.other, "other shapes", "^")
    ax.plot([ref.best.params], [ref.loss], "k*", markersize=12,
            label=f"reference ({ref.best.preset} {ref.best.n_layer}x{ref.best.n_embd})")
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("final val loss (nats/token)")
    ax.set_title(f"Final val loss vs model size at budget {budget}\n(labels: n_layer x n_embd)")
    ax.legend()
    figure.savefig(path)
    return True


def plot_loss_vs_tokens_per_param(rows: Sequence[RunRow], best: Optional[RunRow],
                                  budget: Optional[str], path: Path) -> bool:
    """Every finished run, the lowest loss marked, with Chinchilla's 20 and the seed's 6."""
    points = [row for row in rows if row.finished and row.tokens_per_param is not None]
    if best is None or not points:
        return False
    figure, axes = _figure(2)
    for ax, per, short, x_of in (
        (axes[0], "parameter", "param", lambda r: r.tokens_per_param),
        (axes[1], "non-embedding parameter", "non-emb param", lambda r: r.tokens_per_non_embedding_param),
    ):
        ax.plot([x_of(r) for r in points], [r.val_loss for r in points], "o", alpha=0.7, label="runs")
        ax.plot([x_of(best)], [best.val_loss], "r*", markersize=14, label="lowest loss")
        ax.annotate(f"{ratio(x_of(best))} tokens/{short}\nloss {best.val_loss:.4f}",
                    (x_of(best), best.val_loss), textcoords="offset points", xytext=(8, 8), fontsize=8)
        ax.axvline(CHINCHILLA_TOKENS_PER_PARAM, color="gray", linestyle="--", label="Chinchilla ~20")
        ax.axvline(SEED_TOKENS_PER_PARAM, color="tab:green", linestyle=":", label="seed run ~6")
        ax.set_xscale("log")
        ax.set_xlabel(f"training tokens per {per}")
        ax.set_ylabel("final val loss (nats/token)")
        ax.set_title(f"Final val loss vs tokens per {per} ({budget})")
        ax.legend(fontsize=8)
    figure.savefig(path)
    return True


def _curve_panels(runs: Sequence[tuple[str, RunRow, dict]], title: str, path: Path) -> None:
    """Val loss per run against wall-clock time (left) and tokens (right)."""
    figure, (by_time, by_tokens) = _figure(2)
    longest_s = max((p.elapsed_s for _, run, _ in runs for p in run.curve), default=0.0)
    unit, seconds = next((u, s) for u, s, up_to in TIME_UNITS if longest_s <= up_to)
    for label, run, style in runs:
        losses = [p.loss for p in run.curve]
        by_time.plot([p.elapsed_s / seconds for p in run.curve], losses, marker=".", label=label, **style)
        by_tokens.plot([p.tokens for p in run.curve], losses, marker=".", label=label, **style)
    by_time.set_xlabel(f"wall-clock time ({unit})")
    by_tokens.set_xlabel("tokens")
    by_tokens.xaxis.set_major_formatter(lambda x, _: si(x))
    for ax, against in ((by_time, "wall-clock time"), (by_tokens, "tokens")):
        ax.set_ylabel("val loss (nats/token)")
        ax.set_title(f"{title} vs {against}")
    by_tokens.legend(fontsize=7)
    figure.savefig(path)


def plot_curves(rows: Sequence[RunRow], path: Path) -> bool:
    """Validation loss of the best MAX_CURVES runs (any status) that logged a curve."""
    runs = [row for row in rows if row.curve]
    if not runs:
        return False
    runs.sort(key=lambda r: (r.val_loss is None, r.val_loss or 0.0))
    shown = runs[:MAX_CURVES]
    title = "val loss" if len(shown) == len(runs) else f"val loss, best {len(shown)} of {len(runs)} runs"
    _curve_panels([(row.name, row, {"color": f"C{i % 10}", "linestyle": "-" if i < 10 else "--"})
                   for i, row in enumerate(shown)], title, path)
    return True


def _best_of(config: ConfigResult) -> str:
    return config.best.name + (f", best of {len(config.runs)} seeds" if len(config.runs) > 1 else "")


def plot_optimizers(scales: Sequence[OptimizerScale], path: Path) -> bool:
    """Best run of each optimizer per model size (colour), at sizes where several
    optimizers were run; one line style per optimizer."""
    compared = [scale for scale in scales if len(scale.by_optimizer) > 1]
    optimizers = sorted({name for scale in compared for name in scale.by_optimizer})
    runs = [(f"{name}, {si(scale.params)} params ({_best_of(config)})", config.best,
             {"color": f"C{i % 10}", "linestyle": ("-", "--", ":", "-.")[optimizers.index(name) % 4]})
            for i, scale in enumerate(compared) for name, config in scale.by_optimizer.items()
            if config.best.curve]
    if not runs:
        return False
    _curve_panels(runs, "Best run per optimizer and size: val loss", path)
    return True


def plot_lr_transfer(curves: Sequence[LrCurve], path: Path) -> bool:
    """Final val loss against learning rate, one panel per parametrization (and budget),
    one line per shape, its optimum marked: the picture of muP's learning-rate transfer."""
    panels: dict[tuple[str, str], list[LrCurve]] = {}
    for curve in curves:
        panels.setdefault((curve.transfer, curve.budget), []).append(curve)
    if not panels:
        return False
    figure, axes = _figure(len(panels))
    lows = [min(p.loss for p in c.points) for c in curves]
    for ax, ((transfer, budget), group) in zip(axes, panels.items()):
        for i, curve in enumerate(group):
            color = f"C{i % 10}"
            ax.plot([p.lr for p in curve.points], [p.loss for p in curve.points], "o-", color=color,
                    label=f"{curve.shape}" + (" (best at the grid's edge)" if curve.at_edge else ""))
            ax.axvline(curve.optimum, color=color, linestyle=":", alpha=0.8)
        ax.set_xscale("log")
        # The minima, not the diverged ends, decide the scale: up to 1.5 nats above the lowest.
        ax.set_ylim(min(lows) - 0.05, min(lows) + 1.5)
        ax.set_xlabel("learning rate (dotted: each shape's optimum)")
        ax.set_ylabel("final val loss (nats/token)")
        ax.set_title(f"{transfer}, {budget}\n(n_layer x n_embd)")
        ax.legend(fontsize=8)
    figure.savefig(path)
    return True
