"""Whether activations stay independent of the shape, and the records as JSON.

The rule: after the check's last step, no module kind's RMS at the largest shape may exceed
GROWTH_LIMIT times its RMS at the smallest (Yang et al. 2022's coord check reads the same
curves by eye: flat under muP, growing under the standard parametrization, logits most).
Shrinking is allowed: under muP the logits start near zero at large width and grow into
their O(1) size with training, identically at every width.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from llm_sweep.coordcheck.measure import MODULES, CoordRecord

GROWTH_LIMIT = 2.0
JSON_FILE, PNG_FILE = "coordcheck.json", "coordcheck.png"


def axis_of(records: Sequence[CoordRecord]) -> str:
    """`width` or `depth`: the shape dimension the check varies."""
    return "width" if len({r.width for r in records}) > 1 else "depth"


@dataclass(frozen=True)
class Growth:
    module: str
    ratio: float  # RMS at the largest shape / RMS at the smallest, at the last step
    smallest: int
    largest: int


def growths(records: Sequence[CoordRecord], parametrization: str) -> list[Growth]:
    """One Growth per module kind, largest ratio first."""
    axis = axis_of(records)
    mine = [r for r in records if r.parametrization == parametrization]
    last = max(r.step for r in mine)
    found = []
    for module in MODULES:
        by_size = {getattr(r, axis): r.rms for r in mine if r.module == module and r.step == last}
        if by_size:
            small, large = min(by_size), max(by_size)
            found.append(Growth(module, by_size[large] / by_size[small], small, large))
    return sorted(found, key=lambda g: g.ratio, reverse=True)


def verdict(records: Sequence[CoordRecord], parametrization: str) -> tuple[bool, str]:
    """(passes, the one line that says so) for one parametrization."""
    axis, worst = axis_of(records), growths(records, parametrization)[0]
    steps = max(r.step for r in records) + 1
    span = f"from {axis} {worst.smallest} to {worst.largest} after {steps} step(s)"
    if worst.ratio <= GROWTH_LIMIT:
        return True, (f"{parametrization}: {axis}-independent: no activation grows more than "
                      f"{GROWTH_LIMIT:g}x {span} (largest: {worst.module} {worst.ratio:.2f}x)")
    return False, (f"{parametrization}: NOT {axis}-independent: {worst.module} grows "
                   f"{worst.ratio:.2f}x {span} (limit {GROWTH_LIMIT:g}x)")


def write_records(records: Sequence[CoordRecord], path: Path) -> Path:
    path.write_text(json.dumps([asdict(r) for r in records], indent=1) + "\n")
    return path


def read_records(path: Path) -> list[CoordRecord]:
    return [CoordRecord(**row) for row in json.loads(path.read_text())]
