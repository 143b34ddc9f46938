"""The records of a benchmark: phase times of measured steps, and one row per mode.
Tokens/s and MFU are the training loop's own definitions (llm_sweep.training.metrics)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from llm_sweep.training.metrics import mfu, tokens_per_s


def compile_overhead_s(warmup_s: float, warmup_steps: int, step_s: float) -> float:
    """One-time cost of the warm-up: its wall time beyond that of as many steady steps
    (torch.compile, allocator growth, optimizer state creation)."""
    return max(0.0, warmup_s - warmup_steps * step_s)


@dataclass(frozen=True)
class PhaseTimes:
    """Seconds spent in each phase of one or more optimizer steps."""

    data_s: float = 0.0  # sampling the micro-batches (and their host-to-device copy)
    fwd_bwd_s: float = 0.0  # forward and backward over all micro-batches
    optim_s: float = 0.0  # clip, optimizer step, zero_grad, and the optimizer hook

    @property
    def step_s(self) -> float:
        return self.data_s + self.fwd_bwd_s + self.optim_s

    def __add__(self, other: PhaseTimes) -> PhaseTimes:
        return PhaseTimes(self.data_s + other.data_s, self.fwd_bwd_s + other.fwd_bwd_s,
                          self.optim_s + other.optim_s)


@dataclass(frozen=True)
class BenchRecord:
    """One mode's result: a row of the table and a record of bench.json."""

    mode: str
    tokens_per_s: float
    step_ms: float
    mfu: Optional[float]  # None: the device's peak is unknown
    peak_mem_bytes: int
    compile_s: float
    warmup_s: float
    fwd_bwd_ms: float
    optim_ms: float
    data_ms: float
    flops_per_token: int
    peak_flops: Optional[float]

    @classmethod
    def from_times(cls, mode: str, timed: PhaseTimes, steps: int, tokens_per_step: int,
                   warmup_s: float, warmup_steps: int, flops_per_token: int,
                   peak_flops: Optional[float],
                   peak_mem_bytes: int) -> BenchRecord:
        """The record of `steps` timed optimizer steps whose phases took `timed` in total."""
        rate = tokens_per_s(steps * tokens_per_step, timed.step_s)
        step_s = timed.step_s / steps
        return cls(mode=mode, tokens_per_s=rate, step_ms=1000 * step_s,
                   mfu=mfu(rate, flops_per_token, peak_flops), peak_mem_bytes=peak_mem_bytes,
                   compile_s=compile_overhead_s(warmup_s, warmup_steps, step_s), warmup_s=warmup_s,
                   fwd_bwd_ms=1000 * timed.fwd_bwd_s / steps, optim_ms=1000 * timed.optim_s / steps,
                   data_ms=1000 * timed.data_s / steps, flops_per_token=flops_per_token,
                   peak_flops=peak_flops)
