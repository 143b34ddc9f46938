"""What one job of a sweep will cost: tokens, FLOPs, tokens/param and wall time on the
device it will run on, from its composed config alone (nothing is trained).

The training rate comes from one of three sources, said in the dry run's output:
- jobs that run on this machine's CPU: a few real eager steps of each shape, measured here
  (`plan.probe`; a compiled job runs up to ~2x faster, so a time budget's tokens are a
  lower bound and a token budget's time an upper one);
- `sweep.bench=<bench.json>`: the fastest mode of a bench measured on the target;
- otherwise plan's default MFU (the seed's A100 run) on `peak_flops` or an A100's peak.
A job's wall time adds its evaluations (forward only: a third of a training step's FLOPs
per token) and an assumed start-up and compile time, or the bench's measured compile.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from llm_sweep.core.budget import Budget
from llm_sweep.core.config import RunConfig
from llm_sweep.core.model_config import parametrization_label
from llm_sweep.core.size import flops_per_token, param_count
from llm_sweep.data.shards import eval_batch_count
from llm_sweep.plan.presets import DEFAULT_MFU, DEFAULT_PEAK_FLOPS
from llm_sweep.training.metrics import tokens_per_s_at_mfu

EVAL_SPEEDUP = 3.0  # an evaluated token costs the forward pass: a third of a trained one
START_UP_S = 15.0  # imports, the tracking store, the data from its cache (2-core CPU, measured)
COMPILE_S = 20.0  # a warm inductor cache: tiny on a CPU, wide3 on an H200 (docs/performance.md)
VAL_SPLIT_UNKNOWN = "its validation split is not prepared yet, so its final evaluation is not priced"


@dataclass(frozen=True)
class Throughput:
    mfu: float
    peak_flops: float  # of one device
    source: str  # where the numbers come from, in words
    compile_s: float = COMPILE_S  # measured by the bench, else assumed
    measured: Optional[Callable[[RunConfig], float]] = field(default=None, compare=False)

    def tokens_per_s(self, flops_per_token: float, devices: int = 1) -> float:
        return devices * tokens_per_s_at_mfu(self.mfu, flops_per_token, self.peak_flops)

    def rate_for(self, run: RunConfig, devices: int = 1) -> float:
        """Training tokens/s of `run` on `devices`: measured here when this source measures."""
        if self.measured is not None:
            return devices * self.measured(run)
        return self.tokens_per_s(flops_per_token(run.model, run.batch.seq_len), devices)


def expected_throughput(bench: Optional[str], peak_flops: Optional[float]) -> Throughput:
    """The bench's fastest mode when `bench` names a bench.json, else plan's default MFU on
    `peak_flops` (the run's `peak_flops` key; None: an A100's)."""
    if bench is not None:
        from llm_sweep.bench.results import read_bench  # imports torch

        found = read_bench(Path(bench))
        compile_s = found.compile_s if found.compile_s is not None else COMPILE_S
        return Throughput(found.mfu, found.peak_flops,
                          f"MFU {found.mfu:.3f} of {found.peak_flops / 1e12:.3g} TFLOP/s, the fastest "
                          f"mode ({found.mode}) of {bench}", compile_s)
    peak = peak_flops or DEFAULT_PEAK_FLOPS
    where = "peak_flops" if peak_flops else "an A100 in bf16"
    return Throughput(DEFAULT_MFU, peak, f"MFU {DEFAULT_MFU:.2f} (plan's default) of {peak / 1e12:.3g} "
                                         f"TFLOP/s ({where}); sweep.bench=<bench.json> for a measured one")


@dataclass(frozen=True)
class JobCost:
    params: int
    tokens: float
    flops: float  # training FLOPs: tokens x flops_per_token, as MFU and budget.flops count them
    seconds: float  # training time at the expected throughput
    devices: int
    binding: str  # the budget that ends the job: steps | tokens | flops | time
    parametrization: str = "sp"  # model.parametrization with its base shape (core.model_config)
    overhead_s: float = 0.0  # evaluations, start-up and compile
    eval_priced: bool = True  # False: the final evaluation's size is unknown (VAL_SPLIT_UNKNOWN)
    share: float = 1.0  # of each device: 1/distributed.trials_per_gpu where trials share GPUs

    @property
    def tokens_per_param(self) -> float:
        return self.tokens / self.params

    @property
    def wall_s(self) -> float:
        return self.seconds + self.overhead_s

    @property
    def gpu_hours(self) -> float:
        """Device-hours held: training, evaluations, start-up and compile (its share of the
        devices when trials share them, as if each kept its one-trial rate)."""
        return self.wall_s * self.devices * self.share / 3600


def job_cost(run: RunConfig, rate: Throughput, devices: int = 1, val_tokens: Optional[int] = None,
             compiles: bool = False, share: float = 1.0) -> JobCost:
    """The job's cost: its binding budget (the first to run out) in tokens, at `rate`, and
    its evaluations (the final one over `val_tokens` when it reads the whole split)."""
    per_token = flops_per_token(run.model, run.batch.seq_len)
    per_step = run.batch.tokens_per_step
    tokens_per_s = rate.rate_for(run, devices)
    steps = Budget(run.budget, per_token).steps_allowed(per_step, tokens_per_s)
    binding = min(steps, key=steps.__getitem__)
    tokens = steps[binding] * per_step
    evaluated = eval_tokens(run, steps[binding], val_tokens)
    overhead = START_UP_S + (rate.compile_s if compiles else 0.0)
    overhead += (evaluated or 0) / (EVAL_SPEEDUP * tokens_per_s)
    return JobCost(param_count(run.model), tokens, tokens * per_token, tokens / tokens_per_s, devices, binding,
                   parametrization_label(run.model), overhead, evaluated is not None, share)


def eval_tokens(run: RunConfig, steps: float, val_tokens: Optional[int]) -> Optional[int]:
    """Tokens the job evaluates over its `steps` (a time budget's may be fractional): its
    periodic evaluations and the final one; None when the final one reads a validation split
    of unknown size."""
    window = run.batch.micro_batch_size * run.batch.seq_len
    periodic = (int(steps) // run.eval.interval if run.eval.interval else 0) * run.eval.batches * window
    if run.eval.final_batches is not None:
        return periodic + run.eval.final_batches * window
    if val_tokens is None:
        return None
    return periodic + eval_batch_count(val_tokens, run.batch.micro_batch_size, run.batch.seq_len) * window
