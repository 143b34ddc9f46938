"""Data parallelism over processes: torch.distributed (NCCL on CUDA, Gloo on CPU) and DDP.

The process group comes from torch's own env:// rendezvous: torchrun exports RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; a Slurm or local job of several
submitit tasks gets them from `submitit.helpers.TorchDistributedEnvironment`. A process
started any other way is a world of one, and training is exactly the single-process path.

Rank 0 alone writes (run directory, metrics, checkpoints, MLflow). Every decision that
ends or changes a step (the stop request, the time spent, a non-finite loss) is agreed
through one small all-reduce, so no rank waits in a collective that another never enters.
"""
from __future__ import annotations

import contextlib
import inspect
import os
from dataclasses import replace
from datetime import timedelta
from typing import Any, Callable, ContextManager, Optional

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from llm_sweep.core.errors import PeerLost
from llm_sweep.core.world import World

# What a collective raises when a peer is gone (Gloo's words, NCCL's and the store's).
_LOST_PEER = ("Connection closed by peer", "Connection reset by peer", "Broken pipe",
              "timed out", "Timed out", "NCCL communicator was aborted")


def rank_device(world: World, device: torch.device) -> torch.device:
    """This rank's device: its local GPU on CUDA (one GPU per process)."""
    if device.type != "cuda" or not world.joined:
        return device
    index = world.local_rank if torch.cuda.device_count() > 1 else 0
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def as_peer_lost(exc: BaseException) -> Optional[PeerLost]:
    """`exc` as the one-line error it means, when a collective failed because another
    process of the run is gone; None for any other error."""
    if not (dist.is_available() and dist.is_initialized()) or not isinstance(exc, RuntimeError):
        return None
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if not (isinstance(exc, getattr(dist, "DistError", ())) or any(k in text for k in _LOST_PEER)):
        return None
    return PeerLost(f"rank {dist.get_rank()}: another process of this run failed or stopped "
                    f"answering, so this one stops too ({text[:300]}); see the other processes' logs")


def join_world(timeout_s: float) -> World:
    """Join the run's process group, once, at the entry point (a no-op World() for a plain
    process). `timeout_s` bounds how long a collective waits for a rank that died, so the
    others exit instead of hanging. Leave it with `leave_world()`."""
    _export_submitit_tasks()
    if not World.launched_as_group():  # a plain process: no process group, no DDP
        return World()
    # Gloo for CPU tensors (it also carries the small agreements); NCCL for CUDA tensors.
    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))
    return replace(World.from_env(), joined=True)


def _export_submitit_tasks() -> None:
    """Inside a submitit job of several tasks, export torch's env:// variables from
    submitit's own helper (never parsed by hand from Slurm's)."""
    if "SUBMITIT_EXECUTOR" not in os.environ or World.launched_as_group():
        return
    # submitit only inside its own jobs: a GPU machine that only trains may lack it.
    from submitit import JobEnvironment
    from submitit.helpers import TorchDistributedEnvironment
    if JobEnvironment().num_tasks > 1:
        TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


def leave_world() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def wrap_for_ddp(model: torch.nn.Module, device: torch.device, bucket_cap_mb: float = 25.0,
                 compile: Optional[Callable[[torch.nn.Module], torch.nn.Module]] = None) -> torch.nn.Module:
    """What the training step calls over several processes: DistributedDataParallel over
    `model`, then compiled when `compile` is given. In that order (PyTorch's documented one)
    dynamo's DDPOptimizer splits the compiled graph at DDP's bucket boundaries, so each
    bucket's all-reduce starts while the backward of the layers before it still runs; a
    compiled module inside DDP would hand back every gradient at once, at the end of its
    backward, leaving nothing to overlap. DDP's own bookkeeping around the module is not
    traceable, so this compile cannot be fullgraph: the module's graph itself is checked
    for breaks by the evaluation model's fullgraph compile. Buffers are constants here
    (rotary tables), so none are broadcast."""
    ids = [device.index] if device.type == "cuda" else None
    # No buffer sync in forward (its name changed across torch versions).
    no_buffer_sync = ({"forward_sync_buffers": False}
                      if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
                      else {"broadcast_buffers": False})
    wrapped = DistributedDataParallel(model, device_ids=ids, bucket_cap_mb=bucket_cap_mb, **no_buffer_sync)
    return compile(wrapped) if compile is not None else wrapped


def step_and_eval_models(model: torch.nn.Module, world: World, device: torch.device,
                         bucket_cap_mb: float, compile: Optional[Callable[..., torch.nn.Module]]
                         ) -> tuple[torch.nn.Module, torch.nn.Module]:
    """What the training step calls (DDP over several processes, then compiled) and what
    evaluation calls (compiled fullgraph, so a graph break in the model fails loudly; never
    DDP). A plain process uses one model for both."""
    eval_model = compile(model, fullgraph=True) if compile else model
    if not world.distributed:
        return eval_model, eval_model
    return wrap_for_ddp(model, device, bucket_cap_mb, compile), eval_model


def no_sync_for(model: torch.nn.Module) -> Callable[[], ContextManager]:
    """A context that skips DDP's gradient all-reduce (all micro-batches of a step but the
    last accumulate locally); a plain context for a model without DDP. A compiled DDP
    module is reached through its `_orig_mod`."""
    no_sync = getattr(getattr(model, "_orig_mod", model), "no_sync", None)
    return no_sync if no_sync is not None else contextlib.nullcontext


def agree_max(values: list[float], world: World) -> list[float]:
    """The element-wise maximum of `values` over all ranks (one small all-reduce)."""
    if not world.distributed:
        return values
    tensor = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor.tolist()


def all_sum(tensor: torch.Tensor, world: World) -> torch.Tensor:
    """`tensor` summed over all ranks (in place), on its own device."""
    if world.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def mean_over_world(tensor: torch.Tensor, world: World) -> torch.Tensor:
    """The mean of `tensor` over all ranks (a copy; the identity for one process)."""
    if not world.distributed:
        return tensor
    return all_sum(tensor.detach().clone(), world) / world.world_size


def broadcast_from_main(value: Any, world: World) -> Any:
    """Rank 0's `value`, on every rank."""
    if not world.distributed:
        return value
    box: list[Optional[Any]] = [value if world.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]
