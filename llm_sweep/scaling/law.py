"""The loss law, the one formula everything fits, simulates and plans with.

A Chinchilla surface L(N, D) = E + A / N^alpha + B / D^beta with flops per
token c N^k (the same forms `report --fit` fits), so the compute-optimal N at C is where
dL/dN = 0 along D = C / (c N^k):
    N_opt^(alpha + k beta) = alpha A / (k beta B) (C / c)^beta,   a = beta / (alpha + k beta).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

# Chinchilla's published fit (Hoffmann et al. 2022) with 6 N flops per token: the truth
# when no study of the user's own is given.
CHINCHILLA = dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28, c=6.0, k=1.0)


@dataclass(frozen=True)
class Law:
    E: float
    A: float
    B: float
    alpha: float
    beta: float
    c: float = 6.0  # flops per token = c N^k
    k: float = 1.0

    def loss(self, n: Any, d: Any) -> Any:
        """L at N parameters and D tokens (numbers or arrays)."""
        return self.E + self.A / np.power(n, self.alpha) + self.B / np.power(d, self.beta)

    def tokens(self, compute: float, n: float) -> float:
        return compute / (self.c * n ** self.k)

    @property
    def a(self) -> float:
        return self.beta / (self.alpha + self.k * self.beta)

    @property
    def b(self) -> float:
        return 1 - self.k * self.a

    def n_opt(self, compute: float) -> float:
        ratio = self.alpha * self.A / (self.k * self.beta * self.B) * (compute / self.c) ** self.beta
        return ratio ** (1 / (self.alpha + self.k * self.beta))

    def tokens_per_param(self, compute: float) -> float:
        n = self.n_opt(compute)
        return self.tokens(compute, n) / n
