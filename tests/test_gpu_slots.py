"""One GPU per trial under local_parallel: concurrent trials never share a GPU, and never
more run at once than there are GPUs (fake devices: no GPU needed)."""
from __future__ import annotations

import itertools
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from llm_sweep.core.errors import ConfigError
from llm_sweep.sweeping import gpu_slots
from llm_sweep.sweeping.gpu_slots import GpuSlots

DEVICES = ["0", "1", "2", "3"]


def trial(lock_dir: str, hold_s: float, results) -> None:
    slots = GpuSlots(DEVICES, lock_dir)
    (device,) = slots.claim(1, poll_s=0.05)
    start = time.monotonic()
    time.sleep(hold_s)
    results.put((device, start, time.monotonic()))
    slots.release()


def test_six_trials_on_four_gpus_never_share_one_and_never_exceed_four(tmp_path):
    fork = multiprocessing.get_context("fork")
    results = fork.Queue()
    trials = [fork.Process(target=trial, args=(str(tmp_path), 0.5, results)) for _ in range(6)]
    for process in trials:
        process.start()
    for process in trials:
        process.join(timeout=30)
    spans = [results.get(timeout=5) for _ in trials]
    for (dev_a, start_a, end_a), (dev_b, start_b, end_b) in itertools.combinations(spans, 2):
        if dev_a == dev_b:
            assert end_a <= start_b or end_b <= start_a, "two trials held one GPU at once"
    for _, start, _ in spans:  # at any trial's start, at most 4 trials are running
        assert sum(s <= start < e for _, s, e in spans) <= len(DEVICES)
    assert len({device for device, _, _ in spans}) == len(DEVICES)  # all four were used


def test_a_claim_is_all_or_nothing_and_dies_with_its_holder(tmp_path):
    first = GpuSlots(DEVICES, tmp_path)
    assert first.claim(3, poll_s=0.01) == ["0", "1", "2"]
    second = GpuSlots(DEVICES, tmp_path)
    assert second.claim(1, poll_s=0.01) == ["3"]
    first.release()  # what a finished (or killed) trial's exit does
    assert GpuSlots(DEVICES, tmp_path).claim(2, poll_s=0.01) == ["0", "1"]
    with pytest.raises(ConfigError, match="gpus_per_trial=5 but this job sees 4 GPU"):
        GpuSlots(DEVICES, tmp_path).claim(5)


def test_a_local_submitit_trial_narrows_its_visible_gpus(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_slots, "LOCK_DIR", tmp_path)
    monkeypatch.setattr(gpu_slots, "_CLAIMED", None)
    local_task(monkeypatch, "100")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6")
    other = GpuSlots(["4", "5", "6"], tmp_path)
    assert other.claim(1) == ["4"]  # another trial holds GPU 4
    gpu_slots.claim_gpus_for_trial(1)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "5"


def test_outside_a_local_sweep_and_without_gpus_nothing_changes(monkeypatch):
    monkeypatch.setattr(gpu_slots, "_CLAIMED", None)
    monkeypatch.delenv("SUBMITIT_EXECUTOR", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    gpu_slots.claim_gpus_for_trial(1)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,1"
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "local")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # a CPU-only machine
    gpu_slots.claim_gpus_for_trial(1)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == ""


def local_task(monkeypatch, job_id: str, local_rank: int = 0, tasks: int = 1) -> None:
    """This process as task `local_rank` of a submitit local job (what its controller exports)."""
    for key, value in {"SUBMITIT_EXECUTOR": "local", "SUBMITIT_LOCAL_JOB_ID": job_id,
                       "SUBMITIT_LOCAL_NTASKS": str(tasks), "SUBMITIT_LOCAL_LOCALID": str(local_rank),
                       "SUBMITIT_LOCAL_GLOBALID": str(local_rank), "SUBMITIT_LOCAL_NODEID": "0",
                       "SUBMITIT_LOCAL_JOB_NUM_NODES": "1"}.items():
        monkeypatch.setenv(key, value)


def test_a_trial_asking_for_every_visible_gpu_waits_until_it_is_free(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_slots, "LOCK_DIR", tmp_path)
    monkeypatch.setattr(gpu_slots, "POLL_S", 0.05)
    monkeypatch.setattr(gpu_slots, "_CLAIMED", None)
    local_task(monkeypatch, "101")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "7")  # one GPU on the machine
    other = GpuSlots(["7"], tmp_path)
    assert other.claim(1) == ["7"]  # another trial trains on it
    waiting = threading.Thread(target=gpu_slots.claim_gpus_for_trial, args=(1,))
    waiting.start()
    time.sleep(0.5)
    assert waiting.is_alive()  # not sharing the GPU: waiting for it
    other.release()
    waiting.join(timeout=10)
    assert not waiting.is_alive() and os.environ["CUDA_VISIBLE_DEVICES"] == "7"
    gpu_slots._CLAIMED.release()


TASK = """
import os, sys, time
from pathlib import Path
from llm_sweep.sweeping import gpu_slots
gpu_slots.LOCK_DIR, gpu_slots.POLL_S = Path(sys.argv[1]), 0.05
gpu_slots.claim_gpus_for_trial(2, timeout_s=20)
print(os.environ["CUDA_VISIBLE_DEVICES"], flush=True)
time.sleep(1.0)  # every task holds its trial's claim for a while
"""


def start_task(lock_dir: Path, job_id: str, local_rank: int, tasks: int) -> subprocess.Popen:
    """A process started as task `local_rank` of a submitit local job, as its controller does."""
    env = {**os.environ, "SUBMITIT_EXECUTOR": "local", "SUBMITIT_LOCAL_JOB_ID": job_id,
           "SUBMITIT_LOCAL_NTASKS": str(tasks), "SUBMITIT_LOCAL_LOCALID": str(local_rank),
           "SUBMITIT_LOCAL_GLOBALID": str(local_rank), "SUBMITIT_LOCAL_NODEID": "0",
           "SUBMITIT_LOCAL_JOB_NUM_NODES": "1", "CUDA_VISIBLE_DEVICES": ",".join(DEVICES)}
    return subprocess.Popen([sys.executable, "-c", TASK, str(lock_dir)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_the_tasks_of_one_trial_share_one_claim(tmp_path):
    """Two trials of two tasks each on four GPUs: each trial's ranks get the same two GPUs
    (one per rank), and the two trials get different ones."""
    tasks = {(job, rank): start_task(tmp_path, job, rank, 2)
             for job in ("201", "202") for rank in (1, 0)}  # a non-zero rank may start first
    claims = {}
    for (job, rank), process in tasks.items():
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err[-2000:]
        claims.setdefault(job, {})[rank] = out.strip()
    assert claims["201"][0] == claims["201"][1] and claims["202"][0] == claims["202"][1]
    first, second = (set(claims[job][0].split(",")) for job in ("201", "202"))
    assert len(first) == len(second) == 2 and not first & second
    assert list(tmp_path.glob("trial-*")) == []  # the hand-over files went with their rank 0


def test_more_tasks_than_gpus_per_trial_is_refused_naming_both_keys(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_slots, "LOCK_DIR", tmp_path)
    monkeypatch.setattr(gpu_slots, "_CLAIMED", None)
    local_task(monkeypatch, "301", tasks=2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    with pytest.raises(ConfigError, match=r"hydra.launcher.tasks_per_node=2 .*distributed.gpus_per_trial=1"):
        gpu_slots.claim_gpus_for_trial(1)
