"""Every training feature at one world size, for tests/test_ddp_matrix.py.

    python tests/ddp_matrix.py OUT PHASE...                                   # one process
    torchrun --standalone --nproc_per_node=N tests/ddp_matrix.py OUT PHASE... # N ranks

Runs each case of each PHASE through the real `train()` in one process group (so the
start-up is paid once per command), each in its own run directory under OUT/w<world size>/,
and writes what rank 0 saw to OUT/w<world size>/<case>.json: the first-step loss, the final
validation loss, steps, tokens and the binding budget, or how the run stopped.

Phase `train`: the cases and the default batch, plus the run to resume, uninterrupted and
preempted at step 3 (a checkpoint, then RunInterrupted).
Phase `reference`: only the run to resume, uninterrupted and preempted.
Phase `resume:N`: the run preempted at world size N resumed here with resume=auto, in
OUT/w<world size>/resumed_from_w<N>.

Each case's config is composed once, by the first process that needs it, and kept in
OUT/configs for the others: every world size trains the very same RunConfig.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import sys
from pathlib import Path

import torch.distributed as dist
from hydra import compose, initialize_config_dir

from llm_sweep.core.config import CONF_DIR, load_config, register_configs
from llm_sweep.core.world import World
from llm_sweep.training.distributed import join_world, leave_world
from llm_sweep.training.loop import train
from llm_sweep.training.sinks import Sink
from llm_sweep.training.stop import PREEMPTED, RunInterrupted, StopRequest

BASE = ["data.tokenizer=bytes", "model.n_layer=1", "model.n_embd=64", "model.head_dim=64",
        "batch.micro_batch_size=4", "batch.seq_len=32", "budget.time=null", "eval.interval=0",
        "eval.batches=2", "eval.final_batches=4", "tracking=none", "compile=false",
        "tracking.log_interval=1", "distributed.timeout=60s"]
CASES = {
    # every optimizer, schedule and budget kind; the accumulation split over ranks or not
    "adamw_cosine_steps": ["optim=adamw", "schedule=cosine", "budget.steps=6", "batch.grad_accum=1",
                           "eval.interval=3", "checkpoint.interval=2"],
    "sophiag_wsd_tokens": ["optim=sophiag", "optim.hessian_interval=2", "schedule=wsd",
                           "budget.steps=null", "budget.tokens=3072", "batch.grad_accum=2"],
    "sophiag_rows_steps": ["optim=sophiag", "optim.hessian_interval=1", "budget.steps=6",
                           "batch.grad_accum=1"],
    "adamw_onecycle_flops": ["optim=adamw", "schedule=onecycle", "budget.steps=null",
                             "budget.flops=1.2e9", "batch.grad_accum=3"],
    "adamw_time": ["optim=adamw", "budget.steps=null", "budget.time=1s", "batch.grad_accum=2"],
    "compiled": ["optim=adamw", "budget.steps=4", "batch.grad_accum=2", "compile=true"],
    # every parametrization: per-group learning rates and multipliers on every rank
    "mup_sophiag": ["optim=sophiag", "optim.hessian_interval=2", "model.parametrization=mup",
                    "model.base_width=32", "budget.steps=6", "batch.grad_accum=2"],
    "completep_adamw": ["optim=adamw", "model.parametrization=completep", "model.base_width=32",
                        "model.base_depth=1", "model.n_layer=2", "budget.steps=6", "batch.grad_accum=1"],
}
# The default config (the tiny preset, batch.grad_accum=1: two ranks split each micro-batch's
# rows), composed without BASE.
DEFAULT_BATCH = ["tracking=none", "budget.steps=3", "data.tokenizer=bytes", "compile=false",
                 "tracking.log_interval=1", "eval.final_batches=2", "distributed.timeout=60s"]
RESUMED = ["optim=adamw", "schedule=cosine", "budget.steps=8", "batch.grad_accum=2"]
PREEMPT_AT = 3
register_configs()


class PreemptAt(Sink):
    """What the preemption guard does on a signal, at a chosen step (rank 0's sinks only:
    the other ranks learn it from the per-step agreement)."""

    def __init__(self, stop: StopRequest, step: int):
        self.stop, self.step = stop, step

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        if step >= self.step:
            self.stop.request(PREEMPTED, "test")


def run_config(overrides: list[str], base: list[str] = BASE, kept: Path | None = None):
    """The validated config of `base` + `overrides`; with `kept`, composed once and kept there."""
    overrides = [*base, *overrides]
    path = kept / f"{hashlib.sha1(json.dumps(overrides).encode()).hexdigest()}.pkl" if kept else None
    if path is not None and path.exists():
        return load_config(pickle.loads(path.read_bytes()))
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        run = load_config(compose(config_name="config", overrides=overrides))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}")
        partial.write_bytes(pickle.dumps(run))
        partial.rename(path)  # whole, for a process reading it at the same time
    return run


def first_loss(run_dir: Path) -> float:
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if "train/loss" in record:
            return record["train/loss"]
    raise AssertionError(f"no train/loss in {run_dir}")


def run_case(world: World, name: str, overrides: list[str], out: Path, preempt_at: int | None = None,
             base: list[str] = BASE) -> None:
    run_dir = out / name
    stop = StopRequest()
    sinks = [PreemptAt(stop, preempt_at)] if preempt_at else []
    try:
        summary = train(run_config(overrides, base, out.parent / "configs"), run_dir, sinks=sinks, stop=stop,
                        world=world)
        result = {key: summary[key] for key in ("val_loss", "steps", "tokens", "binding_budget")}
    except RunInterrupted:
        result = {"interrupted": True}
    if world.is_main:
        result.update(first_loss=first_loss(run_dir), world_size=world.world_size)
        (out / f"{name}.json").write_text(json.dumps(result))


def train_phase(world: World, here: Path) -> None:
    """Every case and the default batch, then the run to resume."""
    for name, overrides in CASES.items():
        run_case(world, name, overrides, here)
    run_case(world, "default_batch", DEFAULT_BATCH, here, base=[])
    reference_phase(world, here)


def reference_phase(world: World, here: Path) -> None:
    """The same run twice: uninterrupted, and preempted at PREEMPT_AT."""
    run_case(world, "uninterrupted", RESUMED, here)
    run_case(world, "preempted", RESUMED, here, preempt_at=PREEMPT_AT)


def resume_phase(world: World, out: Path, here: Path, written_by: int) -> None:
    """Resume, on this world size, the run preempted at world size `written_by`."""
    name = f"resumed_from_w{written_by}"
    if world.is_main:
        shutil.copytree(out / f"w{written_by}" / "preempted", here / name)
    if world.distributed:
        dist.barrier()  # every rank reads the checkpoint once rank 0 has copied it
    run_case(world, name, [*RESUMED, "resume=auto"], here)


def main(out: Path, phases: list[str]) -> None:
    world = join_world(60)
    here = out / f"w{world.world_size}"
    here.mkdir(parents=True, exist_ok=True)
    for phase in phases:
        if phase == "train":
            train_phase(world, here)
        elif phase == "reference":
            reference_phase(world, here)
        else:
            resume_phase(world, out, here, int(phase.removeprefix("resume:")))
    leave_world()


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
