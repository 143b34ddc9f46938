"""Learning-rate schedules as pure functions of training progress in [0, 1].

Progress rather than a step index lets one schedule serve step, token and
wall-clock budgets alike: the training loop decides what "done" means.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from llm_sweep.core.optim_config import ScheduleConfig


def lr_at(progress: float, cfg: ScheduleConfig, lr: float) -> float:
    """The learning rate at `progress` (clamped to [0, 1]) for peak learning rate `lr`.

    `cfg` holds allowed values (see its rules in llm_sweep.core.optim_config).
    """
    return _SCHEDULES[cfg.name](min(max(progress, 0.0), 1.0), cfg, lr)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Every group's lr: `lr` times the group's `lr_scale` (the parametrization's per-layer
    factor, models.parametrization; absent under sp and in checkpoints that predate it)."""
    for group in optimizer.param_groups:
        scale = group.get("lr_scale", 1.0)
        group["lr"] = lr if scale == 1.0 else lr * scale


def _min_lr(cfg: ScheduleConfig, lr: float) -> float:
    return cfg.min_lr if cfg.min_lr is not None else lr * cfg.min_lr_ratio


def _cosine(progress: float, cfg: ScheduleConfig, lr: float) -> float:
    """Linear warmup from 0, then a half cosine from `lr` down to the minimum at 1."""
    warmup = cfg.warmup_frac
    if progress < warmup:
        return lr * progress / warmup
    min_lr = _min_lr(cfg, lr)
    decayed = (progress - warmup) / (1 - warmup)
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * decayed))


def _wsd(progress: float, cfg: ScheduleConfig, lr: float) -> float:
    """Warmup-stable-decay: linear warmup, constant, linear decay over the last `decay_frac`."""
    if progress < cfg.warmup_frac:
        return lr * progress / cfg.warmup_frac
    if progress <= 1 - cfg.decay_frac:
        return lr
    min_lr = _min_lr(cfg, lr)
    return min_lr + (lr - min_lr) * (1 - progress) / cfg.decay_frac


def _constant(progress: float, cfg: ScheduleConfig, lr: float) -> float:
    if progress < cfg.warmup_frac:
        return lr * progress / cfg.warmup_frac
    return lr


def _onecycle(progress: float, cfg: ScheduleConfig, lr: float) -> float:
    """torch's OneCycleLR (cosine annealing) with its phases placed by progress.

    Rises from lr/div_factor to `lr` over `warmup_frac`, then falls to
    lr/div_factor/final_div_factor at 1. torch places the peak at step
    pct_start * total_steps - 1 of 0..total_steps-1; here it sits at exactly
    `warmup_frac`, so the two agree up to a shift of about one step.
    """
    initial = lr / cfg.div_factor
    final = initial / cfg.final_div_factor
    if progress < cfg.warmup_frac:
        return _cosine_anneal(initial, lr, progress / cfg.warmup_frac)
    return _cosine_anneal(lr, final, (progress - cfg.warmup_frac) / (1 - cfg.warmup_frac))


def _cosine_anneal(start: float, end: float, fraction: float) -> float:
    return end + (start - end) / 2.0 * (math.cos(math.pi * fraction) + 1)


_SCHEDULES: dict[str, Callable[[float, ScheduleConfig, float], float]] = {
    "cosine": _cosine, "onecycle": _onecycle, "wsd": _wsd, "constant": _constant,
}
