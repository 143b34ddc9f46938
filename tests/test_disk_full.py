"""Running out of disk ends cleanly: one line naming the file and the bytes it needed, no
temporary file left, the previous checkpoint readable, status.json saying failed.

Real small tmpfs mounts stand in for a full disk (root only). Without root or a working
`mount` the tests skip; with LLM_SWEEP_REQUIRE_MOUNT=1 (CI) they fail instead.
"""
from __future__ import annotations

import errno
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from mlflow import MlflowClient
from omegaconf import OmegaConf

from conftest import TINY
from llm_sweep.core.config import CONF_DIR, RunConfig, load_config, register_configs
from llm_sweep.core.errors import DiskFull
from llm_sweep.core.run_record import read_status, write_status
from llm_sweep.core.size import param_count
from llm_sweep.job import JobRecord, _failed
from llm_sweep.tracking.mlflow_run import MlflowTracker
from llm_sweep.training.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from llm_sweep.training.sinks import JsonlSink

register_configs()

# Steps 2 and 4 save a checkpoint: the disk holds the first one and not the second.
RUN = [o for o in TINY if not o.startswith("budget.steps")] + [
    "budget.steps=4", "checkpoint.interval=2", "eval.batches=1", "eval.final_batches=1"]


@pytest.fixture
def mount_tmpfs(tmp_path):
    """mount_tmpfs(size_kb): a fresh tmpfs of that size, unmounted after the test."""
    mounted = []

    def mount(size_kb: int) -> Path:
        where = tmp_path / f"disk{len(mounted)}"
        where.mkdir()
        reason = "mounting a tmpfs needs root" if os.geteuid() != 0 else None
        if reason is None:
            try:
                done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(where)],
                                      capture_output=True, text=True)
                reason = f"mount -t tmpfs failed: {done.stderr.strip()}" if done.returncode else None
            except OSError as exc:  # no mount command here
                reason = f"mount -t tmpfs failed: {exc}"
        if reason is not None:
            if os.environ.get("LLM_SWEEP_REQUIRE_MOUNT") == "1":
                pytest.fail(f"{reason} (LLM_SWEEP_REQUIRE_MOUNT=1 requires the mount)")
            pytest.skip(reason)
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", str(where)], check=True)


def fill(disk: Path) -> None:
    """Take every free byte of `disk` with one file."""
    fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, bytes(65536))
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)


def temporary_files(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if ".tmp" in path.name]


def tiny_run(*overrides: str) -> RunConfig:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return load_config(compose(config_name="config", overrides=list(overrides)))


def test_a_full_disk_ends_the_run_in_one_line_and_keeps_the_previous_checkpoint(tmp_path, mount_tmpfs):
    # A checkpoint holds the fp32 weights and AdamW's two moments, 12 bytes a parameter
    # (plus torch.save's ~2%): 1.5 of them fit, with room for the run's small files.
    checkpoint_bytes = 12 * param_count(tiny_run(*RUN).model)
    disk = mount_tmpfs(int(1.5 * checkpoint_bytes) // 1024 + 128)
    run_dir = disk / "run"
    done = subprocess.run(
        [sys.executable, "-m", "llm_sweep", *RUN, f"hydra.run.dir={run_dir}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    # A line of its own, or after the progress bar's last state (it is not closed on an error).
    errors = re.findall(r"(?:^|[\r\n\]]) ?(error: [^\r\n]*)", done.stderr)
    assert len(errors) == 1, done.stderr[-3000:]
    newest = run_dir / "checkpoints" / "step_0000004.pt"
    assert re.search(rf"writing {newest}: needs \d\.\d MB, \d+\.\d kB free on {disk}$", errors[0])
    assert temporary_files(disk) == []
    (previous,) = list_checkpoints(run_dir)
    assert previous.name == "step_0000002.pt" and load_checkpoint(previous)["spent"]["step"] == 2
    status = read_status(run_dir)
    assert status["status"] == "failed" and status["error"] == errors[0].removeprefix("error: ")


def test_a_status_file_that_finds_no_space_keeps_the_old_one(mount_tmpfs):
    disk = mount_tmpfs(64)
    write_status(disk, "running", config_hash="abc")
    fill(disk)
    with pytest.raises(DiskFull, match=rf"writing {disk}/status.json: needs \d+ B, 0 B free on {disk}$"):
        write_status(disk, "failed", config_hash="abc", error="boom")
    assert read_status(disk) == {"status": "running", "config_hash": "abc"}
    assert temporary_files(disk) == []


def test_a_metrics_line_that_finds_no_space_is_cut_off_again(mount_tmpfs):
    disk = mount_tmpfs(64)
    sink = JsonlSink(disk / "metrics.jsonl")
    sink.log_metrics({"train/loss": 5.5}, step=1)
    before = sink.path.read_text()
    fill(disk)
    # Longer than the rest of the file's last page: the write stops part way.
    with pytest.raises(DiskFull, match=rf"writing {sink.path}: needs \d+\.\d kB"):
        sink.log_metrics({f"metric/{i}": 1.0 for i in range(500)}, step=2)
    assert sink.path.read_text() == before


def test_a_checkpoint_that_finds_no_space_leaves_the_previous_one_readable(mount_tmpfs):
    disk = mount_tmpfs(256)
    first = save_checkpoint(disk, 1, {"model": {"w": torch.ones(1000)}, "config": {}})
    fill(disk)
    with pytest.raises(DiskFull, match=r"step_0000002.pt: needs 400.0 kB, 0 B free"):
        save_checkpoint(disk, 2, {"model": {"w": torch.ones(100_000)}, "config": {}})
    assert list_checkpoints(disk) == [first] and temporary_files(disk) == []
    assert torch.equal(load_checkpoint(first)["model"]["w"], torch.ones(1000))


def test_when_even_the_failure_cannot_be_recorded_it_says_so_in_one_line(mount_tmpfs, capsys):
    disk = mount_tmpfs(64)
    write_status(disk, "running", config_hash="abc")
    fill(disk)
    with pytest.raises(SystemExit) as exited:
        _failed(OmegaConf.create({}), JobRecord(disk, digest="abc"), DiskFull("no space for X"), False)
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        f"warning: the failure is not recorded: no space left on device writing {disk}/status.json: "
        f"needs 78 B, 0 B free on {disk}",
        "error: no space for X"]
    assert temporary_files(disk) == [] and read_status(disk)["status"] == "running"


def test_an_artifact_that_finds_no_space_is_one_warning_and_no_partial_file(tmp_path, mount_tmpfs, caplog):
    disk = mount_tmpfs(64)
    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text("seed: 1\n" * 1000)
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.create_experiment("disk", artifact_location=str(disk / "artifacts"))
    run_id = client.create_run(experiment).info.run_id
    tracker = MlflowTracker(client, run_id, "run", tiny_run(*RUN), run_dir, f"sqlite:///{tmp_path}/mlflow.db")
    fill(disk)
    with caplog.at_level(logging.WARNING):
        tracker.finish("FAILED", summary={"val_loss": 1.0}, error="boom")
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"DiskFull: no space left on device writing {disk}/artifacts/{run_id}/artifacts/config.yaml: " \
           "needs 8.0 kB" in warning
    assert "config.yaml, summary.json" in warning
    assert [p for p in disk.rglob("*") if p.is_file() and p.name != "filler"] == []
    assert client.get_run(run_id).info.status == "FAILED"
    assert client.get_run(run_id).data.tags["error"] == "boom"
