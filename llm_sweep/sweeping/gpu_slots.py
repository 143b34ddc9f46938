"""GPUs for the trials a sweep runs as processes on one machine: one GPU per trial, or
several trials per GPU.

submitit's local executor gives every job the same GPUs (the first `gpus_per_node`), so
without this every concurrent trial would train on GPU 0. Each trial instead claims
`distributed.gpus_per_trial` free GPUs among those it can see, through lock files in the
machine's temporary folder, and narrows CUDA_VISIBLE_DEVICES to them before CUDA starts.
With `distributed.trials_per_gpu=k` each GPU has k places: a trial claims one place (a
shared lock on the GPU and an exclusive one on the place), so at most k trials train on a
GPU and a whole-GPU trial never joins them. Places are handed out evenly: every GPU's first
place before any GPU's second. When too few are free a trial waits; the locks go with the
claiming process, however it ends. A trial of several tasks claims once, for all its ranks.
The same claim runs inside a Slurm job that packs several trials (llm_sweep.sweeping.packed_launcher).
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
PACKED_ENV = "LLM_SWEEP_PACKED_TRIAL"  # set by a packed Slurm job for the trials it runs


class GpuSlots:
    """Claims on GPUs of this machine, by their ids as CUDA_VISIBLE_DEVICES names them: whole
    GPUs (`per_gpu=1`) or one of `per_gpu` places on a GPU."""

    def __init__(self, devices: Sequence[str], lock_dir: Optional[Path] = None, per_gpu: int = 1):
        self.devices = list(devices)
        self.lock_dir = Path(lock_dir or LOCK_DIR)
        self.per_gpu = per_gpu
        self.held: list[IO] = []
        self.place: Optional[int] = None  # the place claimed on a shared GPU

    def _lock(self, name: str, mode: int) -> Optional[IO]:
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        handle = open(self.lock_dir / name, "a+")
        try:
            fcntl.flock(handle, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return None
        return handle

    def _try(self, device: str) -> Optional[IO]:
        return self._lock(f"gpu-{device}.lock", fcntl.LOCK_EX)

    def _try_place(self, device: str, place: int) -> bool:
        """A place on a shared GPU: no whole-GPU trial on it, and this place free."""
        gpu = self._lock(f"gpu-{device}.lock", fcntl.LOCK_SH)
        if gpu is None:
            return False
        spot = self._lock(f"gpu-{device}.place{place}.lock", fcntl.LOCK_EX)
        if spot is None:
            gpu.close()
            return False
        self.held, self.place = [gpu, spot], place
        return True

    def claim(self, count: int, poll_s: Optional[float] = None) -> list[str]:
        """`count` free devices (or, with per_gpu > 1, one place on a device), waiting until
        that many are free at once."""
        poll_s = POLL_S if poll_s is None else poll_s
        if count > len(self.devices):
            raise ConfigError(f"distributed.gpus_per_trial={count} but this job sees "
                             f"{len(self.devices)} GPU(s): {','.join(self.devices)}")
        waited = False
        while True:
            found = self._claim_places() if self.per_gpu > 1 else self._claim_whole(count)
            if found:
                return found
            if not waited:
                log.info("waiting for %s of GPU(s) %s", "a place" if self.per_gpu > 1 else
                         f"{count} free GPU(s)", ",".join(self.devices))
                waited = True
            time.sleep(poll_s)

    def _claim_whole(self, count: int) -> list[str]:
        for device in self.devices:
            handle = self._try(device) if len(self.held) < count else None
            if handle is not None:
                self.held.append(handle)
        if len(self.held) == count:
            return [Path(h.name).stem.removeprefix("gpu-") for h in self.held]
        self.release()  # all or nothing: never sit on part of a claim
        return []

    def _claim_places(self) -> list[str]:
        for place in range(self.per_gpu):  # every GPU's first place before any GPU's second
            for device in self.devices:
                if self._try_place(device, place):
                    return [device]
        return []

    def release(self) -> None:
        for handle in self.held:
            handle.close()  # closing the file drops its lock
        self.held, self.place = [], None


_CLAIMED: Optional[GpuSlots] = None  # held for the life of the process


def visible_gpus() -> list[str]:
    """The GPU ids this process may use: CUDA_VISIBLE_DEVICES, else every GPU NVML counts."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [device for device in listed.split(",") if device.strip()]
    import torch  # only where CUDA_VISIBLE_DEVICES does not say

    return [str(index) for index in range(torch.cuda.device_count())]


def claim_gpus_for_trial(gpus_per_trial: int, timeout_s: float = 600.0, trials_per_gpu: int = 1) -> None:
    """Under submitit's local executor (the local_parallel launcher), or as a trial of a
    packed Slurm job, narrow this trial's CUDA_VISIBLE_DEVICES to GPUs (or a place on a GPU
    shared by `trials_per_gpu` trials) no other running trial holds, waiting until enough are
    free, even when the trial asks for every GPU there is; then take its share of the CPU
    threads. Elsewhere do nothing (Slurm gives each job its own GPUs; a plain run keeps what
    it was given).

    A trial of several tasks (`hydra.launcher.tasks_per_node`, one GPU per task) makes one
    claim: its local rank 0 claims and hands the devices to the other ranks through a file
    named after the job, which they wait for (at most `timeout_s`)."""
    global _CLAIMED
    local = os.environ.get("SUBMITIT_EXECUTOR") == "local"
    if not (local or os.environ.get(PACKED_ENV)) or _CLAIMED is not None:
        return
    devices = visible_gpus()
    if not devices:
        return  # a CPU-only machine: nothing to share
    from submitit import JobEnvironment  # only inside submitit's jobs (checked above)
    job = JobEnvironment()
    if job.num_tasks > gpus_per_trial:
        raise ConfigError(f"hydra.launcher.tasks_per_node={job.num_tasks} processes need a GPU each, "
                          f"but distributed.gpus_per_trial={gpus_per_trial}; set "
                          f"distributed.gpus_per_trial={job.num_tasks}")
    handoff = LOCK_DIR / f"trial-{job.job_id}.gpus"
    if job.local_rank == 0:
        _CLAIMED = GpuSlots(devices, per_gpu=trials_per_gpu)
        claimed = ",".join(_CLAIMED.claim(gpus_per_trial))
        if job.num_tasks > 1:
            _hand_over(handoff, claimed)
    else:
        claimed = _wait_for_handoff(handoff, timeout_s)
    os.environ["CUDA_VISIBLE_DEVICES"] = claimed
    take_cpu_share(len(devices) * trials_per_gpu // gpus_per_trial)
    if trials_per_gpu > 1:
        log.info("trial on GPU %s, place %d of %d%s", claimed, _CLAIMED.place + 1, trials_per_gpu,
                 " (through CUDA MPS)" if mps_running() else "")


def take_cpu_share(trials_at_once: int) -> int:
    """This trial's threads when `trials_at_once` trials share the CPUs it may use (at least
    one): OMP_NUM_THREADS for what starts later, torch's intra-op threads now."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = max(1, cpus // max(1, trials_at_once))
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch  # already loaded by the job that claims

    torch.set_num_threads(threads)
    return threads


def mps_running() -> bool:
    """Whether a CUDA MPS control daemon serves this machine (its pipe directory exists):
    the trials sharing a GPU then run their kernels side by side instead of time-sliced."""
    pipe = os.environ.get("CUDA_MPS_PIPE_DIRECTORY", "/tmp/nvidia-mps")
    return Path(pipe, "control").exists()


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
