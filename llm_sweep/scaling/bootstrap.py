"""The bootstrap of a scaling-law fit: the designed sizes kept, the residuals resampled.

An iso-FLOP study's sizes are chosen, not sampled. Resampling configs with replacement
inside a budget drops the extreme sizes that identify the exponents (a resample of 7 keeps
4.6 on average) and inflates the intervals about threefold. So every resample keeps each
config at its own N and D (a fixed design) and draws new losses around the fitted law:
the fitted loss times one plus a relative residual of the full fit, drawn with replacement
from all of them. The fit spends five constants, which leaves the residuals smaller than
the noise they stand for; they are rescaled by sqrt(n / (n - 5)) first.

A percentile interval of such refits is still a little liberal for a five-constant fit on
20-40 points; llm_sweep.scaling.rules widens it by the Student-t factor of the fit's
residual degrees of freedom. `python -m llm_sweep.scaling.calibrate` measures the coverage
of the result on studies simulated from a known law.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from llm_sweep.scaling.points import Data

FITTED_CONSTANTS = 5  # E, A, B, alpha, beta


@dataclass(frozen=True)
class Resample:
    """One bootstrap draw: the configs (`index`, grouped budget by budget as `data.budgets`
    lists them: every config once, a fixed design) and their drawn losses (`loss`)."""

    index: np.ndarray
    loss: np.ndarray

    def by_budget(self, data: Data) -> list[tuple[np.ndarray, np.ndarray]]:
        cuts = np.cumsum([len(b.members) for b in data.budgets])[:-1]
        return list(zip(np.split(self.index, cuts), np.split(self.loss, cuts)))


def residual_dof(configs: int) -> int:
    """The degrees of freedom the fit's residuals keep (at least 1)."""
    return max(configs - FITTED_CONSTANTS, 1)


def fixed_design_draws(data: Data, fitted: np.ndarray, count: int, seed: int) -> list[Resample]:
    """`count` resamples around `fitted` (the law's loss at each config), the same for the
    same data, fit and seed."""
    index = np.concatenate([b.members for b in data.budgets])
    relative = data.loss / fitted - 1.0
    relative = (relative - relative.mean()) * np.sqrt(len(relative) / residual_dof(len(relative)))
    rng = np.random.default_rng(seed)
    return [Resample(index, fitted[index] * (1.0 + rng.choice(relative, len(index)))) for _ in range(count)]
