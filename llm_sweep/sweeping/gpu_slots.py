"""One GPU per trial when a sweep runs its trials as local processes on a multi-GPU machine.

submitit's local executor gives every job the same GPUs (the first `gpus_per_node`), so
without this every concurrent trial would train on GPU 0. Each trial instead claims
`distributed.gpus_per_trial` free GPUs among those it can see, through a lock file per GPU
in the machine's temporary folder, and narrows CUDA_VISIBLE_DEVICES to them before CUDA
starts. When too few are free it waits; the locks go with the claiming process, however it
ends. A trial of several tasks claims once, for all its ranks.
"""
from __future__ import annotations

import atexit
import fcntl
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import IO, Optional, Sequence

from llm_sweep.core.errors import ConfigError, LlmSweepError

log = logging.getLogger(__name__)


class PeerTimeout(LlmSweepError):
    """Another task of this trial did not do its part in time."""


LOCK_DIR = Path(tempfile.gettempdir()) / f"llm_sweep-gpu-slots-{os.getuid()}"
POLL_S = 2.0


class GpuSlots:
    """Exclusive claims on GPUs of this machine, by their ids as CUDA_VISIBLE_DEVICES names them."""

    def __init__(self, devices: Sequence[str], lock_dir: Optional[Path] = None):
        self.devices = list(devices)
        self.lock_dir = Path(lock_dir or LOCK_DIR)
        self.held: list[IO] = []

    def _try(self, device: str) -> Optional[IO]:
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        handle = open(self.lock_dir / f"gpu-{device}.lock", "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return None
        return handle

    def claim(self, count: int, poll_s: Optional[float] = None) -> list[str]:
        """`count` free devices, waiting until that many are free at once."""
        poll_s = POLL_S if poll_s is None else poll_s
        if count > len(self.devices):
            raise ConfigError(f"distributed.gpus_per_trial={count} but this job sees "
                             f"{len(self.devices)} GPU(s): {','.join(self.devices)}")
        waited = False
        while True:
            for device in self.devices:
                handle = self._try(device) if len(self.held) < count else None
                if handle is not None:
                    self.held.append(handle)
            if len(self.held) == count:
                return [Path(h.name).stem.removeprefix("gpu-") for h in self.held]
            self.release()  # all or nothing: never sit on part of a claim
            if not waited:
                log.info("waiting for %d free GPU(s) of %s", count, ",".join(self.devices))
                waited = True
            time.sleep(poll_s)

    def release(self) -> None:
        for handle in self.held:
            handle.close()  # closing the file drops its lock
        self.held = []


_CLAIMED: Optional[GpuSlots] = None  # held for the life of the process


def visible_gpus() -> list[str]:
    """The GPU ids this process may use: CUDA_VISIBLE_DEVICES, else every GPU NVML counts."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [device for device in listed.split(",") if device.strip()]
    import torch  # only where CUDA_VISIBLE_DEVICES does not say

    return [str(index) for index in range(torch.cuda.device_count())]


def claim_gpus_for_trial(gpus_per_trial: int, timeout_s: float = 600.0) -> None:
    """Under submitit's local executor (the local_parallel launcher), narrow this trial's
    CUDA_VISIBLE_DEVICES to GPUs no other running trial holds, waiting until enough are
    free, even when the trial asks for every GPU there is; elsewhere do nothing (Slurm
    gives each job its own GPUs; a plain run keeps what it was given).

    A trial of several tasks (`hydra.launcher.tasks_per_node`, one GPU per task) makes one
    claim: its local rank 0 claims and hands the devices to the other ranks through a file
    named after the job, which they wait for (at most `timeout_s`)."""
    global _CLAIMED
    if os.environ.get("SUBMITIT_EXECUTOR") != "local" or _CLAIMED is not None:
        return
    devices = visible_gpus()
    if not devices:
        return  # a CPU-only machine: nothing to share
    from submitit import JobEnvironment  # only inside submitit's local jobs (checked above)
    job = JobEnvironment()
    if job.num_tasks > gpus_per_trial:
        raise ConfigError(f"hydra.launcher.tasks_per_node={job.num_tasks} processes need a GPU each, "
                          f"but distributed.gpus_per_trial={gpus_per_trial}; set "
                          f"distributed.gpus_per_trial={job.num_tasks}")
    handoff = LOCK_DIR / f"trial-{job.job_id}.gpus"
    if job.local_rank == 0:
        _CLAIMED = GpuSlots(devices)
        claimed = ",".join(_CLAIMED.claim(gpus_per_trial))
        if job.num_tasks > 1:
            _hand_over(handoff, claimed)
    else:
        claimed = _wait_for_handoff(handoff, timeout_s)
    os.environ["CUDA_VISIBLE_DEVICES"] = claimed


def _hand_over(path: Path, claimed: str) -> None:
    """Publish the trial's devices for its other ranks (atomically); gone when rank 0 exits."""
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(claimed)
    os.replace(tmp, path)
    atexit.register(path.unlink, missing_ok=True)


def _wait_for_handoff(path: Path, timeout_s: float, poll_s: float = 0.2) -> str:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if time.monotonic() > deadline:
            raise PeerTimeout(f"local rank 0 of this trial claimed no GPUs within {timeout_s:g} s "
                              f"(distributed.timeout); nothing at {path}")
        time.sleep(poll_s)
    return path.read_text().strip()
