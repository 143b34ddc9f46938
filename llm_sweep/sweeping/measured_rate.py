"""The throughput a dry run prices a sweep's jobs at, chosen by where they will run.

Jobs launched here on a CPU (Hydra's basic launcher, submitit's local one, device cpu or
auto without CUDA) are priced at this machine's measured rate: a few eager steps of each
shape (`plan.probe`), measured once and kept beside the token cache. Jobs for Slurm, CUDA or a `sweep.bench` keep
`costs.expected_throughput`. Also each job's evaluation size and whether it compiles.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Callable, Optional

import torch
from omegaconf import DictConfig

from llm_sweep.core.config import RunConfig, SweepConfig
from llm_sweep.core.size import flops_per_token
from llm_sweep.core.run_record import write_json
from llm_sweep.data.cache import cache_root, cached_splits
from llm_sweep.hardware import compile_enabled, device_name, resolve_dtype
from llm_sweep.plan.probe import probe_tokens_per_s
from llm_sweep.sweeping.costs import Throughput, expected_throughput

PROBE_STEPS = 2  # timed steps per shape, after one warm-up step
PROBE_STEP_FLOPS = 1e11  # a probe step's work at most (a second on a laptop core)
RATES_FILE = "cpu_tokens_per_s.json"  # beside the token cache: {shape, batch, dtype, threads: rate}
CPU = torch.device("cpu")


def throughput_for(config: DictConfig, settings: SweepConfig, on_slurm: bool) -> Throughput:
    """Measured here when the jobs run on this machine's CPU, else the expected one."""
    device = str(config.get("device", "auto"))
    on_cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available())
    if settings.bench is not None or on_slurm or not on_cpu:
        return expected_throughput(settings.bench, config.get("peak_flops"))
    source = (f"measured on this machine ({device_name(CPU)}): {PROBE_STEPS} eager steps of each shape, "
              f"kept in {cache_root(None) / RATES_FILE}; a compiled job runs up to ~2x faster")
    return Throughput(0.0, 0.0, source, measured=probe_each_shape())


def probe_each_shape() -> Callable[[RunConfig], float]:
    """Tokens/s of a run's shape and batch on this CPU: measured once per shape, thread count
    and torch version on this machine, and kept in the cache folder, so a dry run after the
    first costs nothing (delete the file to measure again; `python -m llm_sweep.bench`
    measures one shape in full)."""
    cache = cache_root(None) / RATES_FILE
    known: dict[str, float] = json.loads(cache.read_text()) if cache.exists() else {}

    def rate(run: RunConfig) -> float:
        per_row = run.batch.seq_len * flops_per_token(run.model, run.batch.seq_len)  # training FLOPs
        rows = max(1, min(run.batch.micro_batch_size, int(PROBE_STEP_FLOPS // per_row)))
        dtype = resolve_dtype(CPU, run.dtype)
        shape = json.dumps(dataclasses.asdict(run.model), sort_keys=True)
        key = (f"{hashlib.sha256(shape.encode()).hexdigest()[:12]} {rows}x{run.batch.seq_len} {dtype} "
               f"{torch.get_num_threads()}threads torch{torch.__version__}")
        if key not in known:
            known[key] = probe_tokens_per_s(run.model, CPU, dtype, rows, run.batch.seq_len, PROBE_STEPS,
                                            seed=run.seed)
            write_json(cache, {**(json.loads(cache.read_text()) if cache.exists() else {}), key: known[key]})
        return known[key]

    return rate


def val_tokens(run: RunConfig) -> Optional[int]:
    """The size of the run's validation split when its data is prepared, else None."""
    splits = cached_splits(run.data)
    return len(splits.val) if splits is not None else None


def compiles(run: RunConfig, rate: Throughput) -> bool:
    """Whether the job compiles: on this CPU as `compile` resolves here; on a GPU unless off."""
    if rate.measured is not None:
        return compile_enabled(CPU, run.compile)
    return run.compile is not False
