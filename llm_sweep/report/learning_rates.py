"""Learning rates across shapes: where the best one lands per shape, whether it transfers
from one width (or depth) to another, and whether a shape comparison was fair to each shape.

A curve is one shape run at three or more learning rates, all else equal (its budget,
optimizer and parametrization), each point the mean final val loss over its seeds. Its
optimum is the vertex of the parabola in log(lr) through the best point and its two
neighbours; a best point at either end of the grid has no such vertex, and the optimum may
lie beyond the grid.

Transfer (muP's promise, Yang et al. 2022): across widths at one depth (or depths at one
width), the optimum moves by at most TRANSFER_FACTOR. In the standard parametrization
(sp) it falls as the model widens.

Fairness: a comparison of shapes is fair to each shape when each ran its own grid of
learning rates (tuned per shape), or when all ran one learning rate that a
parametrization transfers from the shape it was tuned on (muP, CompleteP). One shared
learning rate in sp (the seed's case) partly measures which shape that rate suits.
"""
from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

from llm_sweep.core.config import LR_PARAM
from llm_sweep.core.model_config import MUP, SP
from llm_sweep.report.rows import RunRow

TRANSFER_FACTOR = 2.0  # the largest move of the best lr over a shape range that counts as transfer
MIN_LRS = 3  # a curve: the best and a neighbour on each side


@dataclass(frozen=True)
class LrPoint:
    lr: float
    loss: float  # mean final val loss over the seeds
    n_seeds: int


@dataclass(frozen=True)
class LrCurve:
    """One shape at several learning rates, all else equal; points by lr."""

    budget: str
    transfer: str  # the parametrization's label: sp, mup (base width 64), ...
    optimizer: str
    arch: str
    n_layer: int
    n_embd: int
    points: tuple[LrPoint, ...]

    @property
    def shape(self) -> str:
        return f"{self.n_layer}x{self.n_embd}"

    @property
    def best(self) -> LrPoint:
        return min(self.points, key=lambda point: point.loss)

    @property
    def at_edge(self) -> bool:
        return self.best in (self.points[0], self.points[-1])

    @property
    def optimum(self) -> float:
        """The parabola's vertex in log(lr) through the best point and its neighbours (the
        grid's best at an edge, or where the three points do not curve upward)."""
        i = self.points.index(self.best)
        if self.at_edge:
            return self.best.lr
        x = [math.log(p.lr) for p in self.points[i - 1:i + 2]]
        y = [p.loss for p in self.points[i - 1:i + 2]]
        # Divided differences: y = y0 + s1 (x - x0) + c (x - x0)(x - x1), a vertex where c > 0.
        s1, s2 = (y[1] - y[0]) / (x[1] - x[0]), (y[2] - y[1]) / (x[2] - x[1])
        c = (s2 - s1) / (x[2] - x[0])
        if c <= 0:
            return self.best.lr
        vertex = (x[0] + x[1]) / 2 - s1 / (2 * c)
        return math.exp(min(max(vertex, x[0]), x[2]))

    def record(self) -> dict[str, Any]:
        return {"budget": self.budget, "parametrization": self.transfer, "optimizer": self.optimizer,
                "arch": self.arch, "n_layer": self.n_layer, "n_embd": self.n_embd,
                "lrs": [p.lr for p in self.points], "losses": [p.loss for p in self.points],
                "seeds": [p.n_seeds for p in self.points], "best_lr": self.best.lr,
                "optimum_lr": self.optimum, "at_edge": self.at_edge}


def lr_curves(rows: Sequence[RunRow], min_lrs: int = MIN_LRS) -> list[LrCurve]:
    """Every shape run at `min_lrs` or more learning rates with everything else equal."""
    by_lr: dict[tuple, dict[float, dict[Any, list[float]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list)))
    for row in rows:
        if row.finished:
            rest = tuple(item for item in row.config_key if item[0] != LR_PARAM)
            key = (row.budget, row.transfer, row.optimizer, row.arch, row.n_layer, row.n_embd, rest)
            by_lr[key][row.lr][row.run_id if row.seed is None else row.seed].append(row.val_loss)
    curves = []
    for (budget, transfer, optimizer, arch, n_layer, n_embd, _), seeds_by_lr in by_lr.items():
        if len(seeds_by_lr) >= min_lrs:
            points = tuple(LrPoint(lr, statistics.fmean(statistics.fmean(v) for v in seeds.values()),
                                   len(seeds)) for lr, seeds in sorted(seeds_by_lr.items()))
            curves.append(LrCurve(budget, transfer, optimizer, arch, n_layer, n_embd, points))
    return sorted(curves, key=lambda c: (c.budget, c.transfer, c.optimizer, c.arch, c.n_layer, c.n_embd))


@dataclass(frozen=True)
class Transfer:
    """The optimum of one parametrization across widths at one depth (or depths at one width)."""

    transfer: str
    varied: str  # "width" or "depth"
    curves: tuple[LrCurve, ...]  # by the varied dimension

    def _size(self, curve: LrCurve) -> int:
        return curve.n_embd if self.varied == "width" else curve.n_layer

    @property
    def span(self) -> float:
        return self._size(self.curves[-1]) / self._size(self.curves[0])

    @property
    def shift(self) -> float:
        optima = [curve.optimum for curve in self.curves]
        return max(optima) / min(optima)

    @property
    def transfers(self) -> bool:
        return self.shift <= TRANSFER_FACTOR

    @property
    def verdict(self) -> str:
        ends = f"{self._size(self.curves[0])} to {self._size(self.curves[-1])}"
        trend = " -> ".join(f"{curve.optimum:.3g}" for curve in self.curves)
        text = (f"{self.transfer}: the best lr ({trend}) moves {self.shift:.2g}x over a {self.span:g}x "
                f"{self.varied} range ({ends}): "
                + (f"it transfers (within {TRANSFER_FACTOR:g}x)" if self.transfers else
                   f"it does not transfer (more than {TRANSFER_FACTOR:g}x)"))
        edges = [curve.shape for curve in self.curves if curve.at_edge]
        if edges:
            text += (f"; the best lr of {', '.join(edges)} is at the edge of its grid, so its optimum "
                     "may lie beyond and the move may be larger")
        return text

    def record(self) -> dict[str, Any]:
        return {"parametrization": self.transfer, "varied": self.varied, "span": self.span,
                "shift": self.shift, "transfers": self.transfers, "verdict": self.verdict,
                "shapes": [curve.shape for curve in self.curves],
                "optimum_lrs": [curve.optimum for curve in self.curves]}


def transfers(curves: Sequence[LrCurve]) -> list[Transfer]:
    """Per parametrization (and budget, optimizer, arch): its curves across widths at each
    depth, and across depths at each width, where two or more were run."""
    found = []
    for varied, held in (("width", lambda c: c.n_layer), ("depth", lambda c: c.n_embd)):
        groups: dict[tuple, list[LrCurve]] = defaultdict(list)
        for curve in curves:
            groups[(curve.budget, curve.transfer, curve.optimizer, curve.arch, held(curve))].append(curve)
        size = (lambda c: c.n_embd) if varied == "width" else (lambda c: c.n_layer)
        for group in groups.values():
            if len({size(curve) for curve in group}) >= 2:
                found.append(Transfer(group[0].transfer, varied, tuple(sorted(group, key=size))))
    return found


@dataclass(frozen=True)
class LrFairness:
    """How the learning rate was set for the shapes a comparison holds, and whether that
    is fair to each shape."""

    kind: str  # tuned per shape | transferred | shared untuned | set per shape | mixed
    fair: Optional[bool]  # None: these runs cannot tell
    text: str


def lr_fairness(points: Mapping[str, Sequence[RunRow]]) -> Optional[LrFairness]:
    """`points`: each compared shape's finished runs (every lr it ran) by its label."""
    if len(points) < 2:
        return None
    lrs = {label: sorted({row.lr for row in rows}) for label, rows in points.items()}
    labels = sorted({row.transfer for rows in points.values() for row in rows})
    parametrizations = {row.parametrization for rows in points.values() for row in rows}
    how = ", ".join(labels)
    tuned = [label for label, grid in lrs.items() if len(grid) >= 2]
    if len(tuned) == len(points):
        edges = [label for label, rows in points.items() if _best_lr(rows) in (lrs[label][0], lrs[label][-1])]
        text = f"every shape ran its own grid of learning rates ({how}) and is scored at its best: "
        if edges:
            return LrFairness("tuned per shape", False, text + f"not fair yet, the best lr of "
                              f"{', '.join(edges)} is at the edge of its grid (a better one may lie beyond).")
        return LrFairness("tuned per shape", True, text + "fair to each shape.")
    if tuned:
        return LrFairness("mixed", False, f"only {len(tuned)} of {len(points)} shapes ran a grid of "
                          f"learning rates ({how}): not fair, the others may sit off their best lr.")
    single = {grid[0] for grid in lrs.values()}
    if len(single) > 1:
        return LrFairness("set per shape", None, f"each shape ran one learning rate of its own ({how}; "
                          f"{', '.join(f'{label} {grid[0]:g}' for label, grid in lrs.items())}): fair only "
                          "if each was tuned for this setting, which these runs cannot show.")
    lr = single.pop()
    if parametrizations == {SP}:
        return LrFairness("shared untuned", False, f"every shape ran one learning rate, {lr:g}, in the "
                          "standard parametrization (sp), where the best learning rate moves with width "
                          f"and depth: not fair, the comparison partly measures which shape {lr:g} suits. "
                          "Tune it per shape, or transfer it with model.parametrization=mup or completep.")
    depths = {row.n_layer for rows in points.values() for row in rows}
    if len(labels) == 1 and parametrizations == {MUP} and len(depths) > 1:
        return LrFairness("transferred", None, f"every shape ran one learning rate, {lr:g}, transferred "
                          f"by {labels[0]}, but the shapes differ in depth, across which muP does not "
                          "promise transfer: fair across widths only; use completep to transfer in depth.")
    tuned_by = {row.base_tuned_by for rows in points.values() for row in rows}
    if len(labels) == 1 and None not in tuned_by:
        return LrFairness("transferred", True, f"every shape ran one learning rate, {lr:g}, transferred "
                          f"by {labels[0]} from the base tuned by {', '.join(sorted(tuned_by))}: fair to "
                          "each shape (the comparison rests on that tuned base).")
    if len(labels) == 1:
        return LrFairness("transferred", None, f"every shape ran one learning rate, {lr:g}, transferred "
                          f"by {labels[0]}: fair to each shape only if {lr:g} and the base's constants were "
                          "tuned on the base shape, which these runs do not show (model.base_tuned_by, "
                          "set by a tuned overlay such as +mup=base_cpu, names the study that tuned them).")
    return LrFairness("mixed", False, f"one learning rate, {lr:g}, under different parametrizations "
                      f"({how}): not fair.")


def _best_lr(rows: Sequence[RunRow]) -> float:
    """The learning rate with the lowest mean final loss over its runs (its seeds)."""
    losses: dict[float, list[float]] = defaultdict(list)
    for row in rows:
        losses[row.lr].append(row.val_loss)
    return min(losses, key=lambda lr: statistics.fmean(losses[lr]))
