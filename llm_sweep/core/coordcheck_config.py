"""The `coordcheck` config keys of `python -m llm_sweep.coordcheck` (llm_sweep/coordcheck/)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from llm_sweep.core.model_config import PARAMETRIZATIONS
from llm_sweep.core.rules import rule


def _one_axis(c: "CoordcheckConfig", p: str) -> Optional[str]:
    if len(c.widths) > 1 and len(c.depths) > 1:
        return (f"{p}widths={c.widths} and {p}depths={c.depths}: vary one of them, not both "
                f"(the check plots activations against the one that varies)")
    if len(c.widths) < 2 and len(c.depths) < 2:
        return f"{p}widths={c.widths} is not allowed: give at least two widths, or two {p}depths"
    return None


@dataclass
class CoordcheckConfig:
    # The parametrizations compared in one plot; empty: model.parametrization alone.
    parametrizations: List[str] = field(default_factory=list, metadata=rule(choices=PARAMETRIZATIONS))
    # model.n_embd of each model, narrowest first in the verdict.
    widths: List[int] = field(default_factory=lambda: [64, 128, 256, 512, 1024],
                              metadata=rule(ge=8, min_items=1))
    # model.n_layer of each model; empty: model.n_layer. Several depths (at one width) check
    # depth transfer (completep).
    depths: List[int] = field(default_factory=list, metadata=rule(ge=1))
    # Optimizer steps at the constant lr optim.lr; records are taken at every step's forward
    # pass, step 0 being the initial weights.
    steps: int = field(default=5, metadata=rule(ge=1))
    batch_size: int = field(default=8, metadata=rule(ge=1))  # sequences per step
    seq_len: int = field(default=64, metadata=rule(ge=1))

    cross_field_rules = (_one_axis,)  # not a field: no annotation
