"""The step functions: what one optimizer step and one evaluation do. The training loop
and the bench call the same functions."""
from __future__ import annotations

import math
from typing import Callable, ContextManager, Optional, Sequence

import torch
from torch import Tensor, nn

from llm_sweep.data import TokenShard, iter_eval_batches
from llm_sweep.optim import OptimizerHook
from llm_sweep.run_record import VAL_ACC, VAL_LOSS, VAL_PPL

Autocast = Callable[[], ContextManager]
Batch = tuple[Tensor, Tensor]


def forward_backward(model: nn.Module, batches: Sequence[Batch], autocast: Autocast) -> Tensor:
    """Accumulate gradients over micro-batches; returns the mean loss as a device tensor."""
    total = torch.zeros((), device=batches[0][0].device)
    for x, y in batches:
        with autocast():
            _, loss = model(x, y, return_logits=False)  # the fused head + loss
        (loss / len(batches)).backward()
        total += loss.detach()
    return total / len(batches)


def optimizer_step(model: nn.Module, optimizer: torch.optim.Optimizer, hook: OptimizerHook,
                   grad_clip: float) -> None:
    """Clip, step and clear gradients (the optimizer hook supplies step arguments)."""
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step(**hook.step_kwargs())
    optimizer.zero_grad(set_to_none=True)


@torch.no_grad()
def evaluate(model: nn.Module, shard: TokenShard, micro_batch_size: int, seq_len: int,
             device: torch.device, autocast: Autocast, max_batches: Optional[int]) -> dict[str, float]:
    """Mean next-token loss and argmax accuracy over fixed windows of the validation split."""
    model.eval()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    count = 0
    for x, y in iter_eval_batches(shard, micro_batch_size, seq_len, max_batches=max_batches,
                                  device=device):
        with autocast():
            logits, loss = model(x, y)
        loss_sum += loss.double() * y.numel()
        correct += (logits.argmax(dim=-1) == y).sum()
        count += y.numel()
    model.train()
    loss = (loss_sum / count).item()
    return {VAL_LOSS: loss, VAL_PPL: math.exp(min(loss, 700.0)), VAL_ACC: correct.item() / count}


def parameters_finite(model: nn.Module) -> bool:
    """One device-side reduction over all parameters (a single host sync)."""
    return bool(torch.stack([p.isfinite().all() for p in model.parameters()]).all())
