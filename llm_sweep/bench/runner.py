"""Timing the training step per mode on a synthetic shard of random tokens.

Each mode gets a fresh model and optimizer (`build_optimizer`, so SophiaG's Hessian hook
runs too) and the training loop's own `forward_backward` and `optimizer_step`. The bench
synchronizes the device between phases to split the step time; training does not.
"""
from __future__ import annotations

import functools
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from llm_sweep.bench.metrics import BenchRecord, PhaseTimes
from llm_sweep.bench.modes import BenchMode, parse_modes
from llm_sweep.bench.packing_barrier import StartBarrier, TimedWindows, threads_per_trial
from llm_sweep.bench.results import BenchResult, run_summary
from llm_sweep.core.config import RunConfig
from llm_sweep.core.size import flops_per_token
from llm_sweep.core.world import World
from llm_sweep.data.batches import BatchSampler, StepPrefetcher
from llm_sweep.data.shards import TokenShard
from llm_sweep.hardware import (autocast_for, configure_backends, peak_flops, peak_memory_bytes,
                                reset_peak_memory, resolve_device, share_gpu_memory)
from llm_sweep.models.build import build_model
from llm_sweep.optim.build import build_optimizer
from llm_sweep.training.distributed import rank_device, step_and_eval_models
from llm_sweep.training.metrics import tokens_per_s
from llm_sweep.training.steps import forward_backward, optimizer_step

log = logging.getLogger(__name__)
SHARD_TOKENS = 2**24  # 32 MB of uint16: random windows touch many pages, as a real split does
SAMPLING_SECONDS = 0.5


def synced_clock(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


@contextmanager
def synthetic_shard(vocab_size: int, seed: int, n_tokens: int = SHARD_TOKENS) -> Iterator[TokenShard]:
    """A temporary token shard of uniformly random ids (uint16 caps them at 65,535)."""
    ids = np.random.default_rng(seed).integers(0, min(vocab_size, 2**16), size=n_tokens, dtype=np.uint16)
    with tempfile.TemporaryDirectory(prefix="llm_sweep_bench_") as tmp:
        yield TokenShard.write(Path(tmp) / "random.bin", ids)


def sampling_tokens_per_s(sampler: BatchSampler, seconds: float = SAMPLING_SECONDS) -> float:
    """Tokens/s of `sampler.get` alone (on CUDA including the host-to-device copy)."""
    calls, start = 0, synced_clock(sampler.device)
    while calls < 3 or time.perf_counter() - start < seconds:
        sampler.get(calls, 0)
        calls += 1
    elapsed = synced_clock(sampler.device) - start
    return tokens_per_s(calls * sampler.micro_batch_size * sampler.seq_len, elapsed)


def measure_mode(mode: BenchMode, run: RunConfig, device: torch.device, shard: TokenShard,
                 peak: Optional[float], world: World = World(),
                 windows: Optional[TimedWindows] = None) -> BenchRecord:
    """Warm up, then time `run.bench.steps` optimizer steps of a fresh model in `mode`
    (DDP-wrapped, each process running its share of the micro-batches, under torchrun);
    `windows` records when the timed steps ran and holds them back, with a barrier, until
    the other packed trials have warmed up too."""
    windows = TimedWindows() if windows is None else windows
    reset_peak_memory(device)
    torch.manual_seed(run.seed)
    batch, warmup_steps = run.batch, run.bench.warmup_steps
    model = build_model(run.model).to(device)
    model.loss_chunks = run.loss_chunks
    optimizer, hook = build_optimizer(model, run.optim, batch.tokens_per_step, device.type, seed=run.seed)
    compile_fn = functools.partial(torch.compile, mode=run.compile_mode) if mode.compile else None
    step_model, _ = step_and_eval_models(model, world, device, run.distributed.bucket_cap_mb, compile_fn)
    autocast = autocast_for(device, mode.dtype)
    share = world.share(batch.micro_batch_size, batch.grad_accum)
    last_row, last_weight = share.last_micro_batch(batch.grad_accum)
    sampler = BatchSampler(shard, batch.micro_batch_size, batch.seq_len, seed=run.seed,
                           rows=share.rows, device=device)
    # As training does: this process's share of the batch, sampled ahead in the background.
    prefetcher = StepPrefetcher(sampler, share.micro_batches)
    model.train()

    def timed_step(index: int) -> PhaseTimes:
        # The hook counts warm-up steps as -warmup_steps..-1: the last one, step -1, is due
        # for every periodic refresh (SophiaG's Hessian), so its compilation is not timed
        # and the timed steps 0..steps-1 refresh exactly as the first steps of training do.
        start = time.perf_counter()
        batches = prefetcher.batches(index)  # data ms: the wait for the prefetched batches
        sampled = synced_clock(device)
        forward_backward(step_model, batches, autocast)
        backward_done = synced_clock(device)
        optimizer_step(model, optimizer, hook, run.optim.grad_clip)
        hook.after_step(index - warmup_steps, step_model, batches[-1][0], autocast, last_row, last_weight)
        return PhaseTimes(sampled - start, backward_done - sampled, synced_clock(device) - backward_done)

    start = synced_clock(device)
    for index in range(warmup_steps):
        timed_step(index)
    warmup_s = synced_clock(device) - start
    windows.open(mode.name)
    timed = sum((windows.tick(timed_step(warmup_steps + i)) for i in range(run.bench.steps)), PhaseTimes())
    windows.close()
    prefetcher.close()
    record = BenchRecord.from_times(
        mode.name, timed, run.bench.steps, batch.tokens_per_step, warmup_s, warmup_steps,
        flops_per_token(run.model, batch.seq_len), peak, peak_memory_bytes(device))
    if mode.compile:
        torch.compiler.reset()  # frees the graphs (and the model they hold); the next compiles afresh
    return record


def run_bench(run: RunConfig, world: World = World()) -> BenchResult:
    """Every mode of run.bench.modes in turn, and the batch sampler's rate; under torchrun
    over the process group the entry point joined (`world`). With distributed.trials_per_gpu
    = k > 1 (k trials packed on one device) this process takes 1/k of the CPU threads and,
    on CUDA, of the GPU's memory; started by `python -m llm_sweep.bench.packing` it times
    each mode together with the other trials (packing_barrier)."""
    modes = parse_modes(run.bench.modes)
    device = rank_device(world, resolve_device(run.device))
    configure_backends(device)
    trials = run.distributed.trials_per_gpu
    memory_fraction = share_gpu_memory(device, trials)
    if trials > 1:
        torch.set_num_threads(threads_per_trial(trials))
    windows = TimedWindows(StartBarrier.from_env())
    # The benchmark probes the CPU again: the cache keeps the best peak ever measured.
    peaks = {dtype: peak_flops(device, dtype, run.peak_flops, remeasure=True)
             for dtype in {m.dtype for m in modes}}
    peaks = {dtype: None if peak is None else peak * world.world_size for dtype, peak in peaks.items()}
    load_before = os.getloadavg()[0]
    with synthetic_shard(run.model.vocab_size, run.seed) as shard:
        sampler = BatchSampler(shard, run.batch.micro_batch_size, run.batch.seq_len,
                               seed=run.seed, device=device)
        data_rate = sampling_tokens_per_s(sampler)
        records = []
        for mode in modes:
            log.info("bench: %s ...", mode.name)
            records.append(measure_mode(mode, run, device, shard, peaks[mode.dtype], world, windows))
    summary = run_summary(run, device, (load_before, os.getloadavg()[0]), world)
    summary.update(threads=torch.get_num_threads(), trials_per_gpu=trials,
                   gpu_memory_fraction=memory_fraction, timed_windows=windows.records)
    return BenchResult(summary=summary, data_tokens_per_s=data_rate, records=records)
