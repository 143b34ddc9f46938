"""Training a few steps of one shape and recording the size of each layer kind's output.

The RMS of a kind pools every layer's output (all blocks' attention outputs make one
number), measured by forward hooks during each step's forward pass: step 0 sees the initial
weights, step t the weights after t updates. The logits are the model's own (multiplier
included). fp32, eager, at the constant lr optim.lr and without gradient clipping, which
mixes layers through the global norm and would hide a layer's own growth.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, replace
from typing import Callable, Iterator

import torch
from torch import Tensor, nn

from llm_sweep.core.config import RunConfig
from llm_sweep.data.batches import BatchSampler
from llm_sweep.data.shards import TokenShard
from llm_sweep.models.build import build_model
from llm_sweep.models.layers import CausalLM
from llm_sweep.optim.build import build_optimizer
from llm_sweep.optim.schedules import set_lr

EMBEDDING, ATTENTION, MLP, RESIDUAL, LOGITS = "embedding", "attention", "mlp", "residual", "logits"
MODULES = (EMBEDDING, ATTENTION, MLP, RESIDUAL, LOGITS)  # the order of the plot's panels


@dataclass(frozen=True)
class CoordRecord:
    parametrization: str
    width: int
    depth: int
    step: int
    module: str
    rms: float


class SquareSums:
    """Sum of squares and count of the outputs each hooked module kind produced."""

    def __init__(self) -> None:
        self.sums: dict[str, list[float]] = {}

    def add(self, kind: str, output: Tensor) -> None:
        totals = self.sums.setdefault(kind, [0.0, 0])
        totals[0] += output.detach().double().pow(2).sum().item()
        totals[1] += output.numel()

    def hook(self, kind: str) -> Callable[[nn.Module, tuple, Tensor], None]:
        return lambda module, inputs, output: self.add(kind, output)

    def pop_rms(self) -> dict[str, float]:
        rms = {kind: math.sqrt(total / count) for kind, (total, count) in self.sums.items()}
        self.sums = {}
        return rms

    def clear(self) -> None:
        self.sums = {}


def hooked_modules(model: CausalLM) -> Iterator[tuple[str, nn.Module]]:
    """(kind, module) of every output the check measures, the logits aside."""
    yield EMBEDDING, model.tok_emb
    for block in model.blocks:
        yield ATTENTION, block.attn
        yield MLP, block.mlp
        yield RESIDUAL, block


@dataclass(frozen=True)
class Shape:
    parametrization: str
    width: int
    depth: int


def shape_run(run: RunConfig, shape: Shape, base_width: int, base_depth: int) -> RunConfig:
    """The run at one shape of the check, its hyperparameters tuned at the base shape."""
    model = replace(run.model, parametrization=shape.parametrization, n_embd=shape.width,
                    n_layer=shape.depth, base_width=base_width, base_depth=base_depth)
    return replace(run, model=model)


def measure_shape(run: RunConfig, shard: TokenShard, device: torch.device) -> list[CoordRecord]:
    """`run.coordcheck.steps` optimizer steps of a fresh model of run.model's shape, and the
    RMS of each module kind at each step."""
    check, config = run.coordcheck, run.model
    torch.manual_seed(run.seed)  # the same draws at every shape
    model = build_model(config).to(device)
    optimizer, hook = build_optimizer(model, run.optim, check.batch_size * check.seq_len,
                                      device.type, seed=run.seed)
    set_lr(optimizer, run.optim.lr)
    sums = SquareSums()
    handles = [module.register_forward_hook(sums.hook(kind)) for kind, module in hooked_modules(model)]
    sampler = BatchSampler(shard, check.batch_size, check.seq_len, seed=run.seed, device=device)
    records = []
    try:
        for step in range(check.steps):
            x, y = sampler.get(step, 0)
            logits, loss = model(x, y)
            sums.add(LOGITS, logits)
            records += [CoordRecord(config.parametrization, config.n_embd, config.n_layer, step,
                                    kind, rms) for kind, rms in sums.pop_rms().items()]
            loss.backward()
            optimizer.step(**hook.step_kwargs())
            optimizer.zero_grad(set_to_none=True)
            hook.after_step(step, model, x, contextlib.nullcontext)
            sums.clear()  # SophiaG's Hessian refresh runs forward passes of its own
    finally:
        for handle in handles:
            handle.remove()
    return records
