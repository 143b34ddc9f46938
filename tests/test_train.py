"""The training function: determinism, exact resume, budgets, schedule end, divergence.
Compiling costs seconds: the compiled checks share one compiled run."""
from __future__ import annotations

import copy
import functools
import json
import math
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from conftest import TINY, StopAt
from llm_sweep.core.config import CONF_DIR, RunConfig, load_config, register_configs
from llm_sweep.core.errors import ConfigError, DataError, TrainingDiverged
from llm_sweep.training.checkpoint import list_checkpoints
from llm_sweep.training.loop import train
from llm_sweep.training.metrics import MetricsWindow

register_configs()


def tiny_run(*overrides: str) -> RunConfig:
    """TINY with `overrides`, composed once per distinct overrides (a copy: a test may change it)."""
    return copy.deepcopy(_composed(overrides))


@functools.lru_cache(maxsize=None)
def _composed(overrides: tuple[str, ...]) -> RunConfig:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = compose(config_name="config", overrides=[*TINY, "tracking.log_interval=1", *overrides])
    return load_config(cfg)


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def train_losses(run_dir: Path) -> dict[int, float]:
    return {r["step"]: r["train/loss"] for r in records(run_dir) if "train/loss" in r}


@pytest.mark.slow
def test_step_budget_runs_are_deterministic(tmp_path):
    first = train(tiny_run(), tmp_path / "a")
    second = train(tiny_run(), tmp_path / "b")
    assert first["steps"] == second["steps"] == 6
    assert train_losses(tmp_path / "a") == train_losses(tmp_path / "b")
    assert first["val_loss"] == second["val_loss"]
    assert first["val_loss"] < math.log(50304)


@pytest.mark.slow
@pytest.mark.parametrize("optim", ["adamw", "sophiag"])
def test_resume_after_interruption_is_bit_exact(tmp_path, optim):
    overrides = [f"optim={optim}", "optim.hessian_interval=2", "budget.steps=8",
                 "checkpoint.interval=3"]
    uninterrupted = train(tiny_run(*overrides), tmp_path / "whole")
    with pytest.raises(KeyboardInterrupt):
        train(tiny_run(*overrides), tmp_path / "split", sinks=[StopAt(5)])
    assert [p.name for p in list_checkpoints(tmp_path / "split")] == ["step_0000003.pt"]
    resumed = train(tiny_run(*overrides), tmp_path / "split")
    whole, split = train_losses(tmp_path / "whole"), train_losses(tmp_path / "split")
    assert all(split[step] == whole[step] for step in range(4, 9))
    assert resumed["val_loss"] == uninterrupted["val_loss"]
    assert resumed["steps"] == 8


@pytest.mark.slow
def test_time_budget_is_honoured_within_one_step(tmp_path):
    summary = train(tiny_run("budget.steps=null", "budget.time=1s"), tmp_path)
    step_s = [r["perf/step_ms"] / 1000 for r in records(tmp_path) if "perf/step_ms" in r]
    assert summary["binding_budget"] == "time"
    assert 1.0 <= summary["time_s"]["train"] <= 1.0 + 2 * max(step_s)


@pytest.mark.slow
def test_schedule_reaches_its_minimum_at_the_budget(tmp_path):
    train(tiny_run("budget.steps=10", "optim.lr=2e-3", "schedule.min_lr_ratio=0.1"), tmp_path)
    lrs = [r["lr"] for r in records(tmp_path) if "lr" in r]
    assert lrs[-1] == pytest.approx(2e-4, rel=1e-9)
    assert min(lrs) == lrs[-1] and max(lrs) <= 2e-3
    assert lrs[0] > 0  # the first step does not waste itself at warmup's lr 0


@pytest.mark.slow
def test_loss_going_nan_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tmp_path):
    run = tiny_run("optim.lr=1e30", "optim.grad_clip=0", "budget.steps=30", "checkpoint.interval=1")
    with pytest.raises(TrainingDiverged, match="train/loss became"):
        train(run, tmp_path)
    newest = list_checkpoints(tmp_path)[-1]
    state = torch.load(newest, weights_only=True)
    assert all(torch.isfinite(t).all() for t in state["model"].values())


@pytest.mark.slow
def test_summary_json_lands_with_the_final_metrics(tmp_path):
    summary = train(tiny_run(), tmp_path)
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk == summary
    final = [r for r in records(tmp_path) if "final/val_loss" in r][-1]
    assert final["final/val_loss"] == summary["val_loss"]
    assert final["final/tokens"] == 6 * 4 * 32
    assert final["final/tokens_per_param"] == pytest.approx(6 * 4 * 32 / summary["params"])
    assert math.isclose(final["final/val_ppl"], math.exp(summary["val_loss"]))


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> tuple[dict, Path]:
    """tiny compiled, 4 steps in one log window: its summary and run directory."""
    run_dir = tmp_path_factory.mktemp("compiled")
    return train(tiny_run("compile=true", "budget.steps=4", "tracking.log_interval=4"), run_dir), run_dir


@pytest.mark.slow
def test_compiled_cpu_run_of_tiny(compiled):
    summary, _ = compiled
    assert summary["time_s"]["compile"] > 0 and summary["steps"] == 4
    assert math.isfinite(summary["val_loss"])


@pytest.mark.slow
def test_the_first_window_after_a_compiled_step_counts_only_timed_steps(compiled):
    # One log window over all 4 steps, the first of which compiles: the window's tokens/s
    # must be the timed steps' tokens over their time, exactly what the summary reports.
    summary, run_dir = compiled
    (window,) = [r for r in records(run_dir) if "perf/tokens_per_s" in r]
    assert window["perf/tokens_per_s"] == pytest.approx(summary["tokens_per_s"], rel=1e-12)
    assert window["perf/mfu"] == pytest.approx(summary["mfu"], rel=1e-12)


def test_metrics_window_leaves_compiling_steps_out_of_tokens_and_time():
    window = MetricsWindow(tokens_per_step=100, flops_per_token=6, peak_flops=1200.0)
    window.add(torch.tensor(3.0), seconds=50.0, timed=False)  # the compiling step
    window.add(torch.tensor(2.0), seconds=1.0)
    window.add(torch.tensor(1.0), seconds=3.0)
    metrics = window.flush()
    assert metrics["train/loss"] == pytest.approx(2.0)
    assert metrics["perf/tokens_per_s"] == 2 * 100 / 4.0
    assert metrics["perf/step_ms"] == 2000.0
    assert metrics["perf/mfu"] == pytest.approx(50.0 * 6 / 1200.0)
    assert window.flush() == {}  # flushed: an empty window reports nothing


@pytest.mark.slow
def test_a_nan_on_a_checkpoint_step_is_caught_before_the_checkpoint(tmp_path, monkeypatch):
    # The log is not due at step 4 (interval 3), the checkpoint is (interval 2): only the
    # checkpoint's own check sees the NaN of step 4.
    from llm_sweep.training import loop

    calls = {"n": 0}
    real = loop.forward_backward

    def nan_at_step_4(*args, **kwargs):
        calls["n"] += 1
        loss = real(*args, **kwargs)
        return loss * float("nan") if calls["n"] == 4 else loss

    monkeypatch.setattr(loop, "forward_backward", nan_at_step_4)
    run = tiny_run("budget.steps=8", "checkpoint.interval=2", "tracking.log_interval=3")
    with pytest.raises(TrainingDiverged, match="non-finite by step 4"):
        train(run, tmp_path)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_0000002.pt"]


@pytest.mark.slow
def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, capsys):
    overrides = ["budget.steps=8", "checkpoint.interval=3"]
    uninterrupted = train(tiny_run(*overrides), tmp_path / "whole")
    with pytest.raises(KeyboardInterrupt):
        train(tiny_run(*overrides), tmp_path / "split", sinks=[StopAt(7)])
    older, newest = list_checkpoints(tmp_path / "split")
    assert (older.name, newest.name) == ("step_0000003.pt", "step_0000006.pt")
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # a write cut short
    capsys.readouterr()
    resumed = train(tiny_run(*overrides), tmp_path / "split")
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and str(newest) in warnings[0]
    assert resumed["val_loss"] == uninterrupted["val_loss"]
    whole, split = train_losses(tmp_path / "whole"), train_losses(tmp_path / "split")
    assert all(split[step] == whole[step] for step in range(4, 9))


@pytest.mark.slow
def test_when_no_checkpoint_can_be_read_resume_is_refused_with_one_error(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    for step in (3, 6):
        (folder / f"step_{step:07d}.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match=r"no checkpoint in .*checkpoints can be read "
                                        r"\(step_0000003.pt, step_0000006.pt\)"):
        train(tiny_run(), tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == ["step_0000003.pt", "step_0000006.pt"]


@pytest.mark.slow
def test_a_checkpoint_from_before_a_model_key_resumes_and_another_model_is_refused(tmp_path):
    overrides = ["budget.steps=4", "checkpoint.interval=2"]
    with pytest.raises(KeyboardInterrupt):
        train(tiny_run(*overrides), tmp_path / "older", sinks=[StopAt(3)])
    [path] = list_checkpoints(tmp_path / "older")
    checkpoint = torch.load(path, weights_only=False)
    del checkpoint["config"]["model"]["base_tuned_by"]  # written before the key existed
    torch.save(checkpoint, path)
    assert train(tiny_run(*overrides), tmp_path / "older")["steps"] == 4
    with pytest.raises(ConfigError, match="trained with a different model config"):
        train(tiny_run(*overrides, "model.n_layer=3"), tmp_path / "older")
