"""Training a few steps of one shape and recording, for each layer kind, the size of its
output and of that output's change since step 0.

Every step first runs a fixed probe batch forward (no gradient), with forward hooks on each
layer kind: the RMS of the output is its level, the RMS of output_t - output_0 on the same
probe its change (Delta W x, in Yang et al.'s terms: what training did to it, apart from
the initial weights). The RMS of a kind pools every layer's output (all blocks' attention
outputs make one number). The logits are the model's own (multiplier included). Then it
trains one step on the step's batch. fp32, eager, at the constant lr optim.lr and without
gradient clipping, which mixes layers through the global norm and would hide a layer's own
growth.
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
    rms: float  # of the output on the probe batch
    delta: float = 0.0  # of the output's change since step 0 on the same batch


class Outputs:
    """The outputs each hooked module kind produced in one forward pass, as float64."""

    def __init__(self) -> None:
        self.by_kind: dict[str, list[Tensor]] = {}

    def add(self, kind: str, output: Tensor) -> None:
        self.by_kind.setdefault(kind, []).append(output.detach().double())

    def hook(self, kind: str) -> Callable[[nn.Module, tuple, Tensor], None]:
        return lambda module, inputs, output: self.add(kind, output)

    def pop(self) -> dict[str, list[Tensor]]:
        found, self.by_kind = self.by_kind, {}
        return found


def pooled_rms(tensors: list[Tensor]) -> float:
    """The RMS over every entry of every tensor."""
    return math.sqrt(sum(t.pow(2).sum().item() for t in tensors) / sum(t.numel() for t in tensors))


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
    level and change of each module kind's output at each step."""
    check, config = run.coordcheck, run.model
    torch.manual_seed(run.seed)  # the same draws at every shape
    model = build_model(config).to(device)
    optimizer, hook = build_optimizer(model, run.optim, check.batch_size * check.seq_len,
                                      device.type, seed=run.seed)
    set_lr(optimizer, run.optim.lr)
    sampler = BatchSampler(shard, check.batch_size, check.seq_len, seed=run.seed, device=device)
    probe, _ = sampler.get(check.steps, 0)  # a batch no step trains on
    initial: dict[str, list[Tensor]] = {}
    records = []
    for step in range(check.steps):
        outputs = probe_outputs(model, probe)
        initial = initial or outputs
        records += [CoordRecord(config.parametrization, config.n_embd, config.n_layer, step, kind,
                                pooled_rms(found), pooled_rms([now - then for now, then in zip(found, initial[kind])]))
                    for kind, found in outputs.items()]
        x, y = sampler.get(step, 0)
        _, loss = model(x, y)
        loss.backward()
        optimizer.step(**hook.step_kwargs())
        optimizer.zero_grad(set_to_none=True)
        hook.after_step(step, model, x, contextlib.nullcontext)
    return records


@torch.no_grad()
def probe_outputs(model: CausalLM, probe: Tensor) -> dict[str, list[Tensor]]:
    """Each module kind's outputs on the probe batch, the logits included."""
    outputs = Outputs()
    handles = [module.register_forward_hook(outputs.hook(kind)) for kind, module in hooked_modules(model)]
    try:
        logits = model(probe)
    finally:
        for handle in handles:
            handle.remove()
    outputs.add(LOGITS, logits)
    return outputs.pop()
