"""One GPU per trial under local_parallel: concurrent trials never share a GPU, and never
more run at once than there are GPUs (fake devices: no GPU needed)."""
from __future__ import annotations

import itertools
import multiprocessing
import os
import time

import pytest

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
    with pytest.raises(ValueError, match="gpus_per_trial=5 but this job sees 4 GPU"):
        GpuSlots(DEVICES, tmp_path).claim(5)


def test_a_local_submitit_trial_narrows_its_visible_gpus(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_slots, "LOCK_DIR", tmp_path)
    monkeypatch.setattr(gpu_slots, "_CLAIMED", None)
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "local")
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
