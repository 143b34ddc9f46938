"""The `optim` and `schedule` config groups."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from llm_sweep.core.rules import rule

OPTIMIZERS = ("adamw", "sophiag")
SCHEDULES = ("cosine", "onecycle", "wsd", "constant")


@dataclass
class OptimConfig:
    name: str = field(default="adamw", metadata=rule(choices=OPTIMIZERS))
    lr: float = field(default=1e-3, metadata=rule(gt=0))
    weight_decay: float = field(default=0.1, metadata=rule(ge=0))
    beta1: float = field(default=0.9, metadata=rule(ge=0, lt=1))
    beta2: float = field(default=0.95, metadata=rule(ge=0, lt=1))
    eps: float = field(default=1e-8, metadata=rule(gt=0))
    grad_clip: float = field(default=1.0, metadata=rule(ge=0))  # 0 disables clipping
    # The embeddings' lr (and a tied readout's) over optim.lr, the hidden matrices' lr at the
    # base shape: a base constant muP transfers unchanged to every width
    embed_lr_mult: float = field(default=1.0, metadata=rule(gt=0))
    # SophiaG only
    rho: float = field(default=0.05, metadata=rule(ge=0))
    hessian_interval: int = field(default=10, metadata=rule(ge=1))


def _wsd_decay_after_warmup(s: "ScheduleConfig", p: str) -> Optional[str]:
    if s.name == "wsd" and s.decay_frac > 1 - s.warmup_frac:
        return (f"{p}decay_frac={s.decay_frac} is not allowed: must be in "
                f"[0, 1 - {p}warmup_frac={s.warmup_frac}]")
    return None


@dataclass
class ScheduleConfig:
    name: str = field(default="cosine", metadata=rule(choices=SCHEDULES))
    warmup_frac: float = field(default=0.05, metadata=rule(ge=0, lt=1))
    min_lr: Optional[float] = field(default=None, metadata=rule(ge=0))  # None: lr * min_lr_ratio
    min_lr_ratio: float = field(default=0.1, metadata=rule(ge=0, le=1))
    # wsd: fraction of progress spent decaying
    decay_frac: float = field(default=0.2, metadata=rule(ge=0, le=1))
    # onecycle: initial lr = lr / div_factor, final lr = initial lr / final_div_factor
    div_factor: float = field(default=100.0, metadata=rule(ge=1))
    final_div_factor: float = field(default=0.1, metadata=rule(gt=0))

    cross_field_rules = (_wsd_decay_after_warmup,)  # not a field: no annotation
