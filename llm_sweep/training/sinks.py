"""Where the training loop sends what it measures: sinks, and what a run is.

A sink receives `RunInfo` once, when training starts (the device, the model's size and
cost, resolved where they are decided), then metric records. The tracker, the Optuna
pruning reporter and `metrics.jsonl` are sinks.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Iterable, Optional

from llm_sweep.core.disk import writing


@dataclass(frozen=True)
class RunInfo:
    device: str  # e.g. "NVIDIA H100 80GB HBM3" or "cpu (2 threads)"
    dtype: str  # bf16 | fp32
    compiled: bool
    params: int
    non_embedding_params: int
    flops_per_token: int
    tokens_per_step: int
    peak_flops: Optional[float]  # of all the run's devices; None: unknown device, MFU left blank
    world_size: int = 1  # processes training the run (data parallel)
    resumed_at_step: Optional[int] = None


class Sink:
    """Receives a run's description and its metrics; the defaults ignore both. Any object
    with a `log_metrics(metrics, step)` method works as a sink; `start` is optional."""

    def start(self, info: RunInfo) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        pass


class JsonlSink(Sink):
    """Appends every metric record to a JSON-lines file (the run's metrics.jsonl). On a full
    disk the half-written line is cut off again (DiskFull): the file keeps whole records."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        line = json.dumps({"step": step, **metrics}) + "\n"
        size = self.path.stat().st_size if self.path.exists() else 0
        with writing(self.path, len(line.encode()), undo=partial(_cut, self.path, size)):
            with open(self.path, "a") as f:
                f.write(line)


def _cut(path: Path, size: int) -> None:
    """Shorten `path` back to `size` bytes, if it exists."""
    if path.exists():
        os.truncate(path, size)


def announce(sinks: Iterable[Any], info: RunInfo) -> None:
    """Tell every sink that has a `start` method what the run is."""
    for sink in sinks:
        start = getattr(sink, "start", None)
        if start is not None:
            start(info)


def emit(sinks: Iterable[Sink], metrics: dict[str, Any], step: int) -> dict[str, float]:
    """Send one record (tensors and numbers) to every sink; returns it as floats."""
    values = {key: float(value) for key, value in metrics.items() if value is not None}
    for sink in sinks:
        sink.log_metrics(values, step)
    return values
