"""Several trials per GPU (`distributed.trials_per_gpu`): places on fake GPUs shared without
oversubscription and without idling, each trial's share of the CPU threads, the memory
check that refuses a packing that cannot fit, the dry run's GPU-hours, and packed Slurm
jobs on the local cluster."""
from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import re
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import TINY, run_app
from slurm_cluster import slurm_cluster  # noqa: F401
from llm_sweep.core.config import BatchConfig
from llm_sweep.core.model_config import ModelConfig
from llm_sweep.core.size import param_count
from llm_sweep.sweeping import gpu_slots
from llm_sweep.sweeping.gpu_slots import GpuSlots
from llm_sweep.sweeping.packing import (GiB, STATE_BYTES_PER_PARAM, GpuMemory, PackLayout, gpu_memory,
                                        packing_error, train_memory_bytes)

DEVICES = ["0", "1"]
PER_GPU = 2
POLL_S = 0.02
# How long a freed place may stay free while a trial waits: the waiting process's next poll
# plus the time a loaded machine takes to schedule it (far below every hold).
RETAKEN_WITHIN_S = 0.25


def packed_trial(lock_dir: str, hold_s: float, results) -> None:
    """One trial: (device, place, asked, claimed, held until, released), monotonic seconds;
    it holds its place from `claimed` to `held until` at least, from `asked` to `released`
    at most."""
    asked = time.monotonic()
    slots = GpuSlots(DEVICES, lock_dir, per_gpu=PER_GPU)
    (device,) = slots.claim(1, poll_s=POLL_S)
    start, place = time.monotonic(), slots.place
    time.sleep(hold_s)
    held_until = time.monotonic()
    slots.release()
    results.put((device, place, asked, start, held_until, time.monotonic()))


def run_trials(lock_dir: Path, holds: list[float]) -> list[tuple]:
    fork = multiprocessing.get_context("fork")
    results = fork.Queue()
    trials = [fork.Process(target=packed_trial, args=(str(lock_dir), hold, results)) for hold in holds]
    for process in trials:
        process.start()
    spans = [results.get(timeout=60) for _ in trials]
    for process in trials:
        process.join(timeout=10)
    return spans


def test_k_trials_per_gpu_never_exceed_k_and_never_leave_a_place_idle_while_one_waits(tmp_path):
    holds = [1.2, 0.6, 1.8, 0.8, 1.0, 1.4, 0.6, 1.6, 0.8]  # nine trials for four places
    spans = run_trials(tmp_path, holds)
    # Never more than k: the spans each trial surely held (claimed to held until) never overlap.
    for at in sorted({start for *_, start, _, _ in spans} | {held - 1e-6 for *_, held, _ in spans}):
        running = [(device, place) for device, place, _, start, held, _ in spans if start <= at < held]
        assert len(running) == len(set(running)), "two trials held one place at once"
        for device in DEVICES:
            assert sum(d == device for d, _ in running) <= PER_GPU, f"more than {PER_GPU} trials on GPU {device}"
    # None idle while one waits: a place freed while a trial still waits is taken again at once.
    waits = [(asked, start) for _, _, asked, start, _, _ in spans]
    for device, place, _, _, held, released in spans:
        deadline = released + RETAKEN_WITHIN_S
        if any(asked < held and start > deadline for asked, start in waits):
            assert any((d, p) == (device, place) and held <= s <= deadline for d, p, _, s, _, _ in spans), (
                f"GPU {device} place {place} stayed free over {RETAKEN_WITHIN_S} s while a trial waited")
    assert {(d, p) for d, p, *_ in spans} == set(itertools.product(DEVICES, range(PER_GPU)))


def test_places_fill_every_gpu_once_before_any_twice_and_exclude_whole_gpu_trials(tmp_path):
    first, second = GpuSlots(DEVICES, tmp_path, per_gpu=2), GpuSlots(DEVICES, tmp_path, per_gpu=2)
    assert first.claim(1, poll_s=POLL_S) == ["0"] and second.claim(1, poll_s=POLL_S) == ["1"]
    whole = GpuSlots(DEVICES, tmp_path)  # a trial that wants a GPU to itself
    assert whole._claim_whole(1) == []  # both GPUs have a packed trial on them
    second.release()
    assert whole.claim(1, poll_s=POLL_S) == ["1"]
    third = GpuSlots(DEVICES, tmp_path, per_gpu=2)
    assert third.claim(1, poll_s=POLL_S) == ["0"] and third.place == 1  # GPU 1 is whole: not shared
    for slots in (first, whole, third):
        slots.release()


def test_a_packed_trial_claims_a_place_and_takes_its_share_of_the_cpu_threads(tmp_path, monkeypatch):
    import torch

    threads = torch.get_num_threads()
    monkeypatch.setattr(gpu_slots, "LOCK_DIR", tmp_path)
    monkeypatch.setattr(gpu_slots, "_CLAIMED", None)
    monkeypatch.delenv("SUBMITIT_EXECUTOR", raising=False)
    monkeypatch.setenv(gpu_slots.PACKED_ENV, "1")
    monkeypatch.setenv("SLURM_JOB_ID", "77")  # what submitit's JobEnvironment reads in a Slurm job
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    other = GpuSlots(DEVICES, tmp_path, per_gpu=4)
    assert other.claim(1) == ["0"]
    try:
        gpu_slots.claim_gpus_for_trial(1, trials_per_gpu=4)
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "1"  # every GPU's first place before a second
        assert os.environ["OMP_NUM_THREADS"] == "2" and torch.get_num_threads() == 2  # 16 CPUs / 8 places
    finally:
        gpu_slots._CLAIMED.release()
        other.release()
        torch.set_num_threads(threads)


def test_the_memory_estimate_counts_the_optimizer_state_and_a_bench_calibrates_it(tmp_path):
    model = ModelConfig(n_layer=4, n_embd=256, vocab_size=320)
    batch = BatchConfig(micro_batch_size=8, seq_len=128)
    state = STATE_BYTES_PER_PARAM * param_count(model)
    activations = train_memory_bytes(model, batch) - state
    assert activations == 34 * 8 * 128 * 4 * 256 + 8 * 8 * 128 * 320
    assert train_memory_bytes(model, batch, loss_chunks=4) < train_memory_bytes(model, batch)
    bench = tmp_path / "bench.json"
    peak = 3 * train_memory_bytes(model, batch)
    bench.write_text(json.dumps({"device": "NVIDIA H100", "memory": "CUDA max_memory_allocated",
                                 "device_memory_bytes": 80 * GiB, "loss_chunks": None,
                                 "model": OmegaConf.to_container(OmegaConf.structured(model)),
                                 "batch": OmegaConf.to_container(OmegaConf.structured(batch)),
                                 "records": [{"peak_mem_bytes": peak}, {"peak_mem_bytes": peak / 2}]}))
    memory = gpu_memory(str(bench))
    assert memory.scale == pytest.approx(3.0) and memory.total_bytes == 80 * GiB
    cpu_bench = tmp_path / "cpu.json"
    cpu_bench.write_text(json.dumps({"memory": "peak RSS of the process", "device_memory_bytes": None}))
    assert gpu_memory(str(cpu_bench)).scale == 1.0  # a CPU's RSS says nothing about a GPU
    # A bench.json written before a model key existed: that key at its default.
    older = json.loads(bench.read_text())
    del older["model"]["base_tuned_by"]
    bench.write_text(json.dumps(older))
    assert gpu_memory(str(bench)).scale == pytest.approx(3.0)


def test_a_packing_that_does_not_fit_is_refused_naming_the_key_and_what_fits():
    memory = GpuMemory(40 * GiB, 1.0, "40 GiB")
    assert packing_error([(0, 4 * GiB), (1, 9 * GiB)], 4, memory) is None  # 9 GiB of a 10 GiB share
    why = packing_error([(0, 4 * GiB), (3, 11 * GiB)], 4, memory)
    assert why.startswith("distributed.trials_per_gpu=4: job #3 needs about 11.00 GiB")
    assert "1/4 of 40 GiB (10.00 GiB)" in why and "at most 3 such trials fit" in why
    assert "\n" not in why
    assert packing_error([(0, 50 * GiB)], 1, memory) is None  # one trial per GPU: not a packing


def test_packs_hold_their_gpus_round_by_round():
    layout = PackLayout(gpus=2, per_gpu=2, trials_per_job=None)  # four at once, one round per job
    assert layout.at_once == 4 and layout.jobs(9) == 3
    walls = [100.0, 50, 80, 60, 30, 30, 30, 30, 10]
    assert layout.gpu_hours(walls) == pytest.approx(2 * (100 + 30 + 10) / 3600)
    deep = PackLayout(gpus=1, per_gpu=2, trials_per_job=4)  # two rounds in each job
    assert deep.gpu_hours([10.0, 20, 30, 5]) == pytest.approx(1 * (20 + 30) / 3600)


@pytest.mark.slow
def test_the_dry_run_shows_the_packing_and_the_gpu_hours_it_saves_and_a_full_gpu_is_refused(tmp_path):
    args = ["--multirun", "hydra/launcher=slurm_packed", "hydra.launcher.gpus_per_node=2",
            "distributed.trials_per_gpu=3", "model.n_layer=4", "model.n_embd=64,128", "seed=1,2,3",
            "budget.steps=1000"]
    dry = run_app([*args, "sweep.dry_run=true", f"hydra.sweep.dir={tmp_path / 'dry'}"], cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr[-2000:]
    assert "6 trial(s) packed 6 per job into 1 job(s), 6 at a time in each (3 per GPU)" in dry.stdout
    packing = next(line for line in dry.stdout.splitlines() if line.startswith("Packing: "))
    packed, whole = map(float, re.search(r"([\d.]+) GPU-hours against ([\d.]+) at one trial per GPU", packing).groups())
    assert packed < whole / 2 and "saved if each trial keeps its one-trial rate" in packing
    full = run_app(["--multirun", "hydra/launcher=slurm_packed", "distributed.trials_per_gpu=8", "model=wide3",
                    "batch=a100", f"hydra.sweep.dir={tmp_path / 'full'}"], cwd=tmp_path)
    assert full.returncode == 2
    last = full.stderr.strip().splitlines()[-1]
    assert last.startswith("error: distributed.trials_per_gpu=8: job #0 needs about") and "nothing was launched" in last
    assert not (tmp_path / "full").exists() and not (tmp_path / "mlruns").exists()
    assert not (tmp_path / "mlflow.db").exists()


def training_span(run_dir: Path) -> tuple[float, float]:
    summary = json.loads((run_dir / "summary.json").read_text())
    return summary["ended_at"] - sum(summary["time_s"].values()), summary["ended_at"]


@pytest.mark.slurm
@pytest.mark.usefixtures("slurm_cluster")
def test_a_packed_slurm_sweep_runs_its_trials_side_by_side_inside_fewer_jobs(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_app(["--multirun", "hydra/launcher=slurm_packed", "hydra.launcher.gpus_per_node=null",
                      "hydra.launcher.cpus_per_task=2", "hydra.launcher.mem_gb=4", "hydra.launcher.timeout_min=10",
                      "distributed.trials_per_gpu=2", *TINY, "budget.steps=150", "model.n_embd=64,128",
                      "seed=1,2", f"hydra.sweep.dir={sweep}"], cwd=tmp_path, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "4/4 jobs finished" in result.stdout
    assert "4 trial(s) in 2 Slurm job(s), 2 at a time in each" in result.stdout + result.stderr
    assert len([p for p in (sweep / ".submitit").iterdir() if p.is_dir()]) == 2  # two jobs, not four
    for pack in ((0, 1), (2, 3)):  # each job ran its two trials at the same time
        (start_a, end_a), (start_b, end_b) = (training_span(sweep / str(n)) for n in pack)
        assert start_a < end_b and start_b < end_a, "the trials of one Slurm job did not overlap"
    assert len({json.loads((sweep / str(n) / "summary.json").read_text())["val_loss"] for n in range(4)}) == 4
