"""What a training run is made of, built once from the typed config: device and numerics,
data, model (compiled or not), optimizer, progress counters; resumed from a checkpoint
when the run directory holds one."""
from __future__ import annotations

import functools
import random
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from llm_sweep.core.budget import Budget, Spent
from llm_sweep.core.config import RunConfig
from llm_sweep.core.errors import ConfigError
from llm_sweep.core.model_config import ModelConfig
from llm_sweep.core.size import flops_per_token, param_count
from llm_sweep.core.world import BatchShare, World
from llm_sweep.data.batches import BatchSampler, StepPrefetcher
from llm_sweep.data.cache import Splits, prepare_dataset
from llm_sweep.hardware import (autocast_for, compile_enabled, configure_backends, device_name,
                                peak_flops, resolve_device, resolve_dtype, share_gpu_memory)
from llm_sweep.models.build import build_model
from llm_sweep.models.layers import CausalLM
from llm_sweep.optim.build import build_optimizer
from llm_sweep.optim.hooks import OptimizerHook
from llm_sweep.optim.schedules import lr_at, set_lr
from llm_sweep.training.checkpoint import (latest_valid_checkpoint, load_checkpoint, model_state,
                                           rng_state, save_checkpoint, set_rng_state)
from llm_sweep.training.distributed import rank_device, step_and_eval_models
from llm_sweep.training.sinks import RunInfo
from llm_sweep.training.steps import Autocast, Batch


@dataclass
class TrainingParts:
    run: RunConfig
    device: torch.device
    dtype: str  # bf16 | fp32
    autocast: Autocast
    splits: Splits
    model: CausalLM  # the module itself: checkpoints and the optimizer see it
    step_model: nn.Module  # what the training step calls: compiled, and DDP over several processes
    eval_model: nn.Module  # what evaluation calls: compiled or the module, never DDP
    compiled: bool
    world: World  # this process among those training the run
    share: BatchShare  # this process's part of every step's global batch
    optimizer: torch.optim.Optimizer
    hook: OptimizerHook
    batches: StepPrefetcher  # the next step's micro-batches are sampled while this one computes
    peak_flops: Optional[float]  # of all the run's devices; None: unknown device, MFU left blank
    budget: Budget
    spent: Spent
    resumed: bool
    saved_step: Optional[int] = None  # the step of the newest checkpoint this process wrote

    @property
    def params(self) -> int:
        return param_count(self.run.model)

    @property
    def tokens_per_step(self) -> int:
        return self.run.batch.tokens_per_step

    @property
    def flops_per_token(self) -> int:
        return flops_per_token(self.run.model, self.run.batch.seq_len)

    def step_batches(self, step: int) -> list[Batch]:
        return self.batches.batches(step)

    def set_lr(self, progress: float) -> float:
        lr = lr_at(progress, self.run.schedule, self.run.optim.lr)
        set_lr(self.optimizer, lr)
        return lr

    def save(self, run_dir: Path, final: bool = False) -> None:
        """Write a checkpoint (rank 0 alone writes; every process holds the same weights)."""
        self.saved_step = self.spent.step
        if not self.world.is_main:
            return
        save_checkpoint(run_dir, self.spent.step, {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "spent": self.spent.to_dict(), "rng": rng_state(), "config": asdict(self.run),
            "final": final,
        })

    def info(self) -> RunInfo:
        return RunInfo(
            device=device_name(self.device), dtype=self.dtype, compiled=self.compiled,
            params=self.params,
            non_embedding_params=param_count(self.run.model, non_embedding=True),
            flops_per_token=self.flops_per_token, tokens_per_step=self.tokens_per_step,
            peak_flops=self.peak_flops, world_size=self.world.world_size,
            resumed_at_step=self.spent.step if self.resumed else None)

    def describe(self) -> str:
        """The line printed when training starts."""
        info, batch = self.info(), self.run.batch
        return (f"model {self.run.model.name} ({self.run.model.arch}): {info.params:,} params | "
                f"{info.tokens_per_step:,} tokens/step ({batch.micro_batch_size} x "
                f"{batch.grad_accum} x {batch.seq_len}) | {info.device} {info.dtype}"
                + (" compiled" if info.compiled else "")
                + (f" | {info.world_size} processes (DDP)" if info.world_size > 1 else "")
                + (f" | resumed at step {info.resumed_at_step}" if self.resumed else ""))


def build_parts(run: RunConfig, run_dir: Path, world: World) -> TrainingParts:
    """Every part of the run, on this process's device, resumed when run.resume says so."""
    share = world.share(run.batch.micro_batch_size, run.batch.grad_accum)  # before any compute
    device = rank_device(world, resolve_device(run.device))
    configure_backends(device)
    share_gpu_memory(device, run.distributed.trials_per_gpu)  # trials packed on one GPU: 1/k of it each
    dtype = resolve_dtype(device, run.dtype)
    splits = prepare_dataset(run.data)
    torch.manual_seed(run.seed)  # the same initial weights on every process and every run
    random.seed(run.seed)
    model = build_model(run.model).to(device)
    model.loss_chunks = run.loss_chunks
    optimizer, hook = build_optimizer(model, run.optim, run.batch.tokens_per_step, device.type,
                                      seed=run.seed)
    spent = _resume(run, Path(run_dir), model, optimizer)
    compiled = compile_enabled(device, run.compile)
    if compiled:
        # A fresh compile cache: graphs of an earlier run in this process (a notebook, a
        # test session) would count toward dynamo's recompile limit, a hard error below.
        torch.compiler.reset()
    compile_fn = functools.partial(torch.compile, mode=run.compile_mode) if compiled else None
    step_model, eval_model = step_and_eval_models(model, world, device, run.distributed.bucket_cap_mb,
                                                  compile_fn)
    sampler = BatchSampler(splits.train, run.batch.micro_batch_size, run.batch.seq_len,
                           seed=run.seed, rows=share.rows, device=device)
    batches = StepPrefetcher(sampler, share.micro_batches)
    peak = peak_flops(device, dtype, run.peak_flops)
    return TrainingParts(
        run=run, device=device, dtype=dtype, autocast=autocast_for(device, dtype), splits=splits,
        model=model, step_model=step_model, eval_model=eval_model,
        compiled=compiled, world=world, share=share, optimizer=optimizer, hook=hook, batches=batches,
        peak_flops=None if peak is None else peak * world.world_size,
        budget=Budget(run.budget, flops_per_token(run.model, run.batch.seq_len)),
        spent=spent or Spent(), resumed=spent is not None)


def _checkpoint_to_resume(run: RunConfig, run_dir: Path) -> Optional[dict[str, Any]]:
    if run.resume == "never":
        return None
    if run.resume == "auto":
        found = latest_valid_checkpoint(run_dir)
        return found[1] if found else None
    return load_checkpoint(Path(run.resume))


def _resume(run: RunConfig, run_dir: Path, model: nn.Module,
            optimizer: torch.optim.Optimizer) -> Optional[Spent]:
    """Load the checkpoint run.resume points at into the model and optimizer; its counters."""
    checkpoint = _checkpoint_to_resume(run, run_dir)
    if checkpoint is None:
        return None
    # A key added since the checkpoint was written counts at its default.
    defaults = {f.name: f.default for f in fields(ModelConfig)}
    if {**defaults, **checkpoint["config"]["model"]} != asdict(run.model):
        raise ConfigError(f"resume: the checkpoint in {run_dir} was trained with a different "
                          "model config; use resume=never or a new run directory")
    model.load_state_dict(model_state(checkpoint))
    optimizer.load_state_dict(checkpoint["optimizer"])
    set_rng_state(checkpoint["rng"])
    return Spent(**checkpoint["spent"])
