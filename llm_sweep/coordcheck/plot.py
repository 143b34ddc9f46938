"""coordcheck.png: RMS against width (or depth), log-log, one panel per module kind and one
row per parametrization, one line per step, as the coord-check figures of Yang et al. 2022."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from matplotlib import colormaps
from matplotlib.figure import Figure

from llm_sweep.coordcheck.measure import MODULES, CoordRecord
from llm_sweep.coordcheck.verdict import axis_of


def plot_records(records: Sequence[CoordRecord], path: Path) -> Path:
    # A Figure with the Agg canvas, not pyplot: no global backend, no GUI.
    axis = axis_of(records)
    parametrizations = list(dict.fromkeys(r.parametrization for r in records))
    modules = [m for m in MODULES if any(r.module == m for r in records)]
    steps = sorted({r.step for r in records})
    figure = Figure(figsize=(3.2 * len(modules), 2.8 * len(parametrizations)), dpi=110, layout="constrained")
    grid = figure.subplots(len(parametrizations), len(modules), squeeze=False, sharey="col")
    colors = colormaps["viridis"]
    for row, parametrization in enumerate(parametrizations):
        for col, module in enumerate(modules):
            ax = grid[row][col]
            for step in steps:
                points = sorted((getattr(r, axis), r.rms) for r in records if r.parametrization == parametrization
                                and r.module == module and r.step == step)
                ax.plot(*zip(*points), "o-", markersize=3, color=colors(step / max(1, steps[-1])),
                        label=f"step {step}")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.grid(alpha=0.3)
            ax.set_title(f"{parametrization}: {module}", fontsize=9)
            ax.set_xlabel(axis, fontsize=8)
            if col == 0:
                ax.set_ylabel("RMS of the output", fontsize=8)
    grid[0][-1].legend(fontsize=7)
    figure.savefig(path)
    return path
