"""Whether activations and their updates stay independent of the shape, and the records as JSON.

Two rules, read after the check's last step, from the smallest shape to the largest:
- the change of each module kind's output since step 0 (what training did to it) may neither
  grow nor shrink more than LIMIT times: a learning rate or multiplier that is too large at
  width grows it, one too small (an lr divided by width where it should not be, a multiplier
  applied twice) shrinks it;
- the output's level may not grow more than LIMIT times. It may shrink: under muP the logits
  start near zero at large width and grow into their O(1) size with training, identically
  at every width, which the change rule sees.
Yang et al. 2022's coord check reads the same curves by eye: flat under muP, growing under the
standard parametrization, logits most. The check's lr must make updates dominate the initial
weights (conf/coordcheck.yaml), or small updates hide behind the level.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from llm_sweep.coordcheck.measure import MODULES, CoordRecord

LIMIT = 2.0
JSON_FILE, PNG_FILE = "coordcheck.json", "coordcheck.png"


def axis_of(records: Sequence[CoordRecord]) -> str:
    """`width` or `depth`: the shape dimension the check varies."""
    return "width" if len({r.width for r in records}) > 1 else "depth"


@dataclass(frozen=True)
class Drift:
    module: str
    measure: str  # "change" (since step 0) or "level"
    ratio: float  # at the largest shape / at the smallest, at the last step
    smallest: int
    largest: int

    @property
    def excess(self) -> float:
        """How far past flat, either way, as a factor >= 1 (a level may shrink freely)."""
        if self.measure == "level":
            return self.ratio
        return max(self.ratio, 1 / self.ratio)

    @property
    def direction(self) -> str:
        return "grows" if self.ratio >= 1 else "shrinks"


def drifts(records: Sequence[CoordRecord], parametrization: str) -> list[Drift]:
    """Each module kind's change and level ratios, the largest excess first."""
    axis = axis_of(records)
    mine = [r for r in records if r.parametrization == parametrization]
    last = max(r.step for r in mine)
    found = []
    for module in MODULES:
        at_last = {getattr(r, axis): r for r in mine if r.module == module and r.step == last}
        if not at_last:
            continue
        small, large = min(at_last), max(at_last)
        if last > 0:
            found.append(Drift(module, "change", at_last[large].delta / at_last[small].delta, small, large))
        found.append(Drift(module, "level", at_last[large].rms / at_last[small].rms, small, large))
    return sorted(found, key=lambda d: d.excess, reverse=True)


def verdict(records: Sequence[CoordRecord], parametrization: str) -> tuple[bool, str]:
    """(passes, the one line that says so) for one parametrization."""
    axis, worst = axis_of(records), drifts(records, parametrization)[0]
    steps = max(r.step for r in records) + 1
    span = f"from {axis} {worst.smallest} to {worst.largest} after {steps} step(s)"
    if worst.excess <= LIMIT:
        return True, (f"{parametrization}: {axis}-independent: no activation or update grows or shrinks "
                      f"more than {LIMIT:g}x {span} (largest: {worst.module} {worst.measure} "
                      f"{worst.ratio:.2f}x)")
    what = "update" if worst.measure == "change" else "output"
    return False, (f"{parametrization}: NOT {axis}-independent: the {worst.module} {what} {worst.direction} "
                   f"{worst.excess:.2f}x {span} (limit {LIMIT:g}x)")


def write_records(records: Sequence[CoordRecord], path: Path) -> Path:
    path.write_text(json.dumps([asdict(r) for r in records], indent=1) + "\n")
    return path


def read_records(path: Path) -> list[CoordRecord]:
    return [CoordRecord(**row) for row in json.loads(path.read_text())]
