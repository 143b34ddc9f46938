"""The optimizer of a model and the hook the training loop calls around each of its steps."""
from __future__ import annotations

import torch
from torch import nn

from llm_sweep.core.errors import ConfigError
from llm_sweep.core.optim_config import OPTIMIZERS, OptimConfig
from llm_sweep.optim.adamw import build_adamw, weight_decay_groups
from llm_sweep.optim.hooks import OptimizerHook
from llm_sweep.optim.sophia import SophiaG, SophiaHessianHook


def build_optimizer(model: nn.Module, cfg: OptimConfig, tokens_per_step: int,
                    device_type: str, seed: int = 0) -> tuple[torch.optim.Optimizer, OptimizerHook]:
    """The optimizer for `model` and the hook the training loop calls around each step.

    `tokens_per_step` is the number of tokens behind one optimizer step (all
    micro-batches); SophiaG scales its Hessian estimate by it. `seed` (the run's) seeds
    SophiaG's sampled labels.
    """
    if cfg.name == "adamw":
        return build_adamw(model, cfg, device_type), OptimizerHook()
    if cfg.name == "sophiag":
        # The parametrization's lr and weight-decay factors hold as for Adam: Sophia's clipped
        # step is at most lr per coordinate, and its decay is coupled to lr as AdamW's is.
        # rho and the Hessian floor are not scaled: no published rule (see the coord check).
        groups = weight_decay_groups(model, cfg.weight_decay, lr=cfg.lr, embed_lr_mult=cfg.embed_lr_mult)
        optimizer = SophiaG(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), rho=cfg.rho,
                            weight_decay=cfg.weight_decay)
        return optimizer, SophiaHessianHook(optimizer, tokens_per_step, cfg.hessian_interval, seed)
    raise ConfigError(f"optim.name={cfg.name!r} is not one of {', '.join(OPTIMIZERS)}")
