"""The `optim` and `schedule` config groups."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

OPTIMIZERS = ("adamw", "sophiag")
SCHEDULES = ("cosine", "onecycle", "wsd", "constant")


@dataclass
class OptimConfig:
    name: str = "adamw"  # adamw | sophiag
    lr: float = 1e-3
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0  # 0 disables clipping
    # SophiaG only
    rho: float = 0.05
    hessian_interval: int = 10


@dataclass
class ScheduleConfig:
    name: str = "cosine"  # cosine | onecycle | wsd | constant
    warmup_frac: float = 0.05
    min_lr: Optional[float] = None  # None: lr * min_lr_ratio
    min_lr_ratio: float = 0.1
    decay_frac: float = 0.2  # wsd: fraction of progress spent decaying
    div_factor: float = 100.0  # onecycle: initial lr = lr / div_factor
    final_div_factor: float = 0.1  # onecycle: final lr = initial lr / final_div_factor
