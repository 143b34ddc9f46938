"""benchmarks/gpu_check.sh: it fits one device command, and every step runs and returns its
files (a dry run of the same steps at tiny scale on the CPU)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from conftest import REPO

SCRIPT = REPO / "benchmarks" / "gpu_check.sh"
GPU_MACHINE = REPO / "tests" / "gpu_machine"  # its sitecustomize hides mlflow, optuna, submitit, ...
RETURNED_FILES = 8  # what the device tool brings back from $OUT at most


def step_limits() -> dict[str, int]:
    """Each `step NAME SECONDS ...` line of the script: its name and time limit."""
    return {name: int(limit) for name, limit in
            re.findall(r"^step (\w+) (\d+) ", SCRIPT.read_text(), flags=re.MULTILINE)}


def test_the_steps_fit_one_device_command_most_valuable_first():
    limits = step_limits()
    assert list(limits)[:3] == ["setup", "bench_wide3", "bench_eager"]  # the MFU figure first
    assert set(limits) >= {"bench_ddp", "train", "bench_chunks", "cuda_tests", "bench_sophia"}
    assert sum(limits.values()) <= 540  # the install included: 600 s per command, with margin
    # What a cold inductor cache needs: two compiles of wide3 with 25 unrolled loss chunks,
    # SophiaG's eager warm-up with a Hessian refresh, the CUDA tests' own compile.
    floors = {"bench_wide3": 140, "train": 110, "bench_chunks": 110, "cuda_tests": 45, "bench_sophia": 25}
    assert all(limits[name] >= floor for name, floor in floors.items()), limits


def test_the_check_writes_no_final_checkpoint():
    train_step = re.search(r"^step train .*?(?=^step )", SCRIPT.read_text(), flags=re.MULTILINE | re.DOTALL)
    assert "checkpoint.final=false" in train_step.group(0)


@pytest.mark.slow
def test_dry_run_runs_every_step_and_returns_its_files(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "GPU_CHECK_DRY": "1", "GPU_CHECK_PYTHON": sys.executable,
           "OUT": str(out), "RUNS": str(tmp_path / "runs"), "GPU_CHECK_SITE": str(tmp_path / "site"),
           "PYTHONPATH": str(GPU_MACHINE)}  # without the packages the GPU machine lacks
    done = subprocess.run(["bash", str(SCRIPT)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=900)
    log = (out / "gpu_check.log").read_text()
    for name in step_limits():
        assert f"=== {name}: exit 0 " in log, f"step {name} failed:\n{log[-4000:]}"
    assert done.returncode == 0, done.stdout[-4000:]

    records = [json.loads(line) for line in (out / "bench.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [
        "bench_wide3", "bench_eager", "bench_ddp", "bench_chunks", "bench_chunks", "bench_sophia"]
    assert [r["result"]["ddp"] for r in records[1:3]] == [False, True]  # plain, then DDP-wrapped
    chunk_settings = [o for r in records[3:5] for o in r["overrides"] if o.startswith("loss_chunks=")]
    assert chunk_settings == ["loss_chunks=0", "loss_chunks=25"]
    assert all(r["result"]["records"][0]["tokens_per_s"] > 0 for r in records)
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["steps"] == 3 and summary["val_loss"] > 0  # the dry run's budget.steps
    assert not list((tmp_path / "runs" / "train").glob("checkpoints/*"))
    for name in ("bench.md", "train_metrics.jsonl", "cuda_tests.txt"):
        assert (out / name).stat().st_size > 0, name
    assert len(list(out.iterdir())) <= RETURNED_FILES
