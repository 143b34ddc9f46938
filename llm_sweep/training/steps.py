"""The step functions: what one optimizer step and one evaluation do. The training loop
and the bench call the same functions."""
from __future__ import annotations

import contextlib
import math
from typing import Callable, ContextManager, Optional, Sequence

import torch
from torch import Tensor, nn

from llm_sweep.core.run_record import VAL_ACC, VAL_LOSS, VAL_PPL
from llm_sweep.core.world import World
from llm_sweep.data.batches import iter_eval_batches
from llm_sweep.data.shards import TokenShard
from llm_sweep.optim.hooks import OptimizerHook
from llm_sweep.training.distributed import all_sum, no_sync_for

Autocast = Callable[[], ContextManager]
Batch = tuple[Tensor, Tensor]


def forward_backward(model: nn.Module, batches: Sequence[Batch], autocast: Autocast) -> Tensor:
    """Accumulate gradients over micro-batches; returns the mean loss as a device tensor.
    Under DDP the gradients are all-reduced once, with the last micro-batch's backward."""
    total = torch.zeros((), device=batches[0][0].device)
    no_sync = no_sync_for(model)
    for index, (x, y) in enumerate(batches):
        last = index == len(batches) - 1
        with contextlib.nullcontext() if last else no_sync():
            with autocast():
                _, loss = model(x, y, return_logits=False)  # the head + loss (loss_chunks)
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
             device: torch.device, autocast: Autocast, max_batches: Optional[int],
             world: World = World()) -> dict[str, float]:
    """Mean next-token loss and argmax accuracy over fixed windows of the validation split.
    Over several processes each evaluates its share of the windows and the sums are reduced."""
    model.eval()
    sums = torch.zeros(3, device=device, dtype=torch.float64)  # loss x tokens, correct, tokens
    for x, y in iter_eval_batches(shard, micro_batch_size, seq_len, max_batches=max_batches,
                                  device=device, rank=world.rank, world_size=world.world_size):
        with autocast():
            logits, loss = model(x, y)
        sums += torch.stack([loss.double() * y.numel(), (logits.argmax(dim=-1) == y).sum().double(),
                             torch.tensor(float(y.numel()), device=device, dtype=torch.float64)])
    model.train()
    loss_sum, correct, count = all_sum(sums.cpu(), world).tolist()
    loss = loss_sum / count
    return {VAL_LOSS: loss, VAL_PPL: math.exp(min(loss, 700.0)), VAL_ACC: correct / count}


def parameters_finite(model: nn.Module) -> bool:
    """One device-side reduction over all parameters (a single host sync)."""
    return bool(torch.stack([p.isfinite().all() for p in model.parameters()]).all())
