"""The trial side of `python -m llm_sweep.bench.packing`: a file barrier that makes the timed
steps of k bench processes on one device start together, and the record of when each
mode's timed steps ran.

The packing command starts each trial with LLM_SWEEP_BENCH_BARRIER=<k>:<folder>. For every
mode the bench then meets the other k-1 processes twice: after its warm-up steps (so that
no one's warm-up or compilation overlaps anyone's timed steps) and after its timed steps
(so that no one's next warm-up, or exit, overlaps the others' timing). Meeting is writing
a file in <folder>/<mode>/start (or end) and waiting until k files are there, at most
LLM_SWEEP_BENCH_BARRIER_TIMEOUT_S seconds (600 by default; then it goes on, says so, and
records how many had arrived). Without the variable nothing waits; the windows are still
recorded (bench.json's `timed_windows`).
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, TypeVar

from llm_sweep.core.errors import ConfigError

log = logging.getLogger(__name__)

BARRIER_ENV = "LLM_SWEEP_BENCH_BARRIER"  # "<count>:<folder>"
TIMEOUT_ENV = "LLM_SWEEP_BENCH_BARRIER_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 600.0
POLL_S = 0.005

T = TypeVar("T")


def cpu_count() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def threads_per_trial(trials: int, cpus: Optional[int] = None) -> int:
    """Each of `trials` processes sharing the CPUs gets an equal share, at least one thread."""
    return max(1, (cpu_count() if cpus is None else cpus) // max(1, trials))


@dataclass(frozen=True)
class StartBarrier:
    """`count` processes meet in `folder`: each leaves a file and waits for the others'."""

    folder: Path
    count: int
    timeout_s: float = DEFAULT_TIMEOUT_S

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Optional[StartBarrier]:
        value = environ.get(BARRIER_ENV)
        if not value:
            return None
        count, _, folder = value.partition(":")
        if not count.isdigit() or int(count) < 1 or not folder:
            raise ConfigError(f"{BARRIER_ENV}={value!r}: expected <count>:<folder>, count >= 1")
        timeout = environ.get(TIMEOUT_ENV)
        try:
            timeout_s = float(timeout) if timeout else DEFAULT_TIMEOUT_S
        except ValueError:
            raise ConfigError(f"{TIMEOUT_ENV}={timeout!r}: expected seconds") from None
        return cls(Path(folder), int(count), timeout_s)

    def wait(self, name: str) -> int:
        """Arrive at the gate `name` and wait until all `count` processes have (at most
        timeout_s seconds): how many had arrived when it went on."""
        gate = self.folder / name
        gate.mkdir(parents=True, exist_ok=True)
        (gate / f"{socket.gethostname()}-{os.getpid()}-{threading.get_ident()}").touch()
        deadline = time.monotonic() + self.timeout_s
        while (arrived := len(list(gate.iterdir()))) < self.count:
            if time.monotonic() > deadline:
                log.warning("bench barrier %s: %d of %d processes after %g s; going on",
                            gate, arrived, self.count, self.timeout_s)
                break
            time.sleep(POLL_S)
        return arrived


@dataclass
class TimedWindows:
    """When each mode's timed steps ran, in seconds since the epoch (comparable between the
    processes of one machine), with the barrier's meetings around them when there is one."""

    barrier: Optional[StartBarrier] = None
    records: list[dict[str, Any]] = field(default_factory=list)

    def open(self, mode: str) -> None:
        """Warm-up done: meet the others (with a barrier), then the timed steps start."""
        name = f"{len(self.records)}-{mode}"
        arrived_at = time.time()
        arrived = self.barrier.wait(f"{name}/start") if self.barrier else 1
        self.records.append({"mode": mode, "warmup_end_unix": arrived_at, "start_unix": time.time(),
                             "step_ends_unix": [], "end_unix": None,
                             "barrier": None if self.barrier is None else
                             {"count": self.barrier.count, "arrived_at_start": arrived}})

    def tick(self, value: T) -> T:
        """After each timed step (`value`: what the step returned, passed through)."""
        self.records[-1]["step_ends_unix"].append(time.time())
        return value

    def close(self) -> None:
        """Timed steps done: note the end, then wait for the others to finish theirs."""
        record = self.records[-1]
        record["end_unix"] = time.time()
        if self.barrier:
            name = f"{len(self.records) - 1}-{record['mode']}"
            record["barrier"]["arrived_at_end"] = self.barrier.wait(f"{name}/end")
