"""What one job of a sweep will cost: tokens, FLOPs, tokens/param and time on the expected
hardware, from its composed config alone (nothing is built or run).

The throughput is plan's: an MFU on a peak (`training.metrics.tokens_per_s_at_mfu`), either
plan's default (the seed's A100 run) or the fastest mode of a bench.json measured here.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from llm_sweep.core.budget import Budget
from llm_sweep.core.config import RunConfig
from llm_sweep.core.model_config import parametrization_label
from llm_sweep.core.size import flops_per_token, param_count
from llm_sweep.plan.presets import DEFAULT_MFU, DEFAULT_PEAK_FLOPS
from llm_sweep.training.metrics import tokens_per_s_at_mfu


@dataclass(frozen=True)
class Throughput:
    mfu: float
    peak_flops: float  # of one device
    source: str  # where the numbers come from, in words

    def tokens_per_s(self, flops_per_token: float, devices: int = 1) -> float:
        return devices * tokens_per_s_at_mfu(self.mfu, flops_per_token, self.peak_flops)


def expected_throughput(bench: Optional[str], peak_flops: Optional[float]) -> Throughput:
    """The bench's fastest mode when `bench` names a bench.json, else plan's default MFU on
    `peak_flops` (the run's `peak_flops` key; None: an A100's)."""
    if bench is not None:
        from llm_sweep.bench.results import read_bench  # imports torch

        found = read_bench(Path(bench))
        return Throughput(found.mfu, found.peak_flops,
                          f"MFU {found.mfu:.3f} of {found.peak_flops / 1e12:.3g} TFLOP/s, the fastest "
                          f"mode ({found.mode}) of {bench}")
    peak = peak_flops or DEFAULT_PEAK_FLOPS
    where = "peak_flops" if peak_flops else "an A100 in bf16"
    return Throughput(DEFAULT_MFU, peak, f"MFU {DEFAULT_MFU:.2f} (plan's default) of {peak / 1e12:.3g} "
                                         f"TFLOP/s ({where}); sweep.bench=<bench.json> for a measured one")


@dataclass(frozen=True)
class JobCost:
    params: int
    tokens: float
    flops: float  # training FLOPs: tokens x flops_per_token, as MFU and budget.flops count them
    seconds: float  # training time at the expected throughput (evaluation and compile not counted)
    devices: int
    binding: str  # the budget that ends the job: steps | tokens | flops | time
    parametrization: str = "sp"  # model.parametrization with its base shape (core.model_config)

    @property
    def tokens_per_param(self) -> float:
        return self.tokens / self.params

    @property
    def gpu_hours(self) -> float:
        return self.seconds * self.devices / 3600


def job_cost(run: RunConfig, rate: Throughput, devices: int = 1) -> JobCost:
    """The job's cost: its binding budget (the first to run out) in tokens, at `rate`."""
    per_token = flops_per_token(run.model, run.batch.seq_len)
    per_step = run.batch.tokens_per_step
    tokens_per_s = rate.tokens_per_s(per_token, devices)
    steps = Budget(run.budget, per_token).steps_allowed(per_step, tokens_per_s)
    binding = min(steps, key=steps.__getitem__)
    tokens = steps[binding] * per_step
    return JobCost(param_count(run.model), tokens, tokens * per_token, tokens / tokens_per_s, devices, binding,
                   parametrization_label(run.model))
