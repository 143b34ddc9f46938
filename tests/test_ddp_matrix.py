"""Every feature a user can combine with torchrun or tasks_per_node, at world size 1 and 2
(Gloo, CPU, real processes): each gives the one-process result, or is refused up front
with one line naming the keys."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import torch

from conftest import DDP_TINY, REPO, TINY, run_app, torchrun
from ddp_matrix import CASES, first_loss

pytestmark = pytest.mark.slow
MATRIX = REPO / "tests" / "ddp_matrix.py"


@pytest.fixture(scope="module")
def matrix(tmp_path_factory) -> Path:
    """The matrix run at both world sizes, and each one's preempted run resumed at the other,
    in three commands: one process trains; two ranks train and resume its preempted run;
    one process resumes theirs."""
    out = tmp_path_factory.mktemp("ddp_matrix")
    one = subprocess.run([sys.executable, str(MATRIX), str(out), "train"], cwd=out,
                         capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-4000:]
    two = torchrun([str(MATRIX), str(out), "train", "resume"], cwd=out, module=None, timeout=600)
    assert two.returncode == 0, two.stderr[-4000:]
    one = subprocess.run([sys.executable, str(MATRIX), str(out), "resume"], cwd=out,
                         capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-4000:]
    return out


def result(matrix: Path, world_size: int, case: str) -> dict:
    return json.loads((matrix / f"w{world_size}" / f"{case}.json").read_text())


@pytest.mark.parametrize("case", [name for name in CASES if name != "adamw_time"])
def test_two_ranks_give_the_one_process_result(matrix, case):
    one, two = result(matrix, 1, case), result(matrix, 2, case)
    assert two["world_size"] == 2 and one["world_size"] == 1
    assert two["first_loss"] == pytest.approx(one["first_loss"], abs=1e-4)
    assert two["val_loss"] == pytest.approx(one["val_loss"], abs=2e-3)
    assert (two["steps"], two["tokens"], two["binding_budget"]) == (one["steps"], one["tokens"],
                                                                   one["binding_budget"])


def test_a_time_budget_binds_at_both_world_sizes_from_the_same_first_step(matrix):
    one, two = result(matrix, 1, "adamw_time"), result(matrix, 2, "adamw_time")
    assert two["first_loss"] == pytest.approx(one["first_loss"], abs=1e-4)
    assert one["binding_budget"] == two["binding_budget"] == "time"


@pytest.mark.parametrize("written_by,resumed_on", [(2, 1), (1, 2)])
def test_a_checkpoint_resumes_on_another_world_size_as_if_never_stopped(matrix, written_by, resumed_on):
    assert result(matrix, written_by, "preempted")["interrupted"]
    resumed = result(matrix, resumed_on, "resumed")
    whole = result(matrix, 1, "uninterrupted")
    assert resumed["val_loss"] == pytest.approx(whole["val_loss"], abs=2e-3)
    assert (resumed["steps"], resumed["tokens"]) == (whole["steps"], whole["tokens"])
    losses = {r["step"]: r["train/loss"] for r in map(json.loads, (
        matrix / f"w{resumed_on}" / "resumed" / "metrics.jsonl").read_text().splitlines()) if "train/loss" in r}
    reference = {r["step"]: r["train/loss"] for r in map(json.loads, (
        matrix / "w1" / "uninterrupted" / "metrics.jsonl").read_text().splitlines()) if "train/loss" in r}
    for step in range(5, whole["steps"] + 1):  # after the checkpoint
        assert losses[step] == pytest.approx(reference[step], abs=1e-4)


def test_a_ddp_trained_checkpoint_exports_with_the_same_logits(matrix, tmp_path):
    transformers = pytest.importorskip("transformers")
    from llm_sweep.training.checkpoint import load_model

    run_dir = matrix / "w2" / "adamw_cosine_steps"
    done = run_app([str(run_dir), str(tmp_path / "hf")], cwd=tmp_path, module="llm_sweep.export")
    assert done.returncode == 0, done.stderr[-3000:]
    ours = load_model(run_dir).eval()
    theirs = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    idx = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (ours(idx) - theirs(idx).logits).abs().max() < 1e-4
        one_process = load_model(matrix / "w1" / "adamw_cosine_steps").eval()
        # The same training: fp32 reduction noise, amplified by Adam's normalized steps.
        assert (ours(idx) - one_process(idx)).abs().max() < 1e-2


def test_the_default_batch_runs_on_two_and_four_processes(tmp_path, one_process_run):
    """grad_accum=1 (the default) on 2 processes: each runs half the rows of the micro-batch;
    grad_accum=2 on 4: two groups of two. A batch whose rows cannot split is one line."""
    args = ["tracking=none", "budget.steps=3", "data.tokenizer=bytes", "compile=false",
            "tracking.log_interval=1", "eval.final_batches=2"]
    one = run_app([*args, "hydra.run.dir=one"], cwd=tmp_path)
    assert one.returncode == 0, one.stderr[-3000:]
    two = torchrun([*args, "hydra.run.dir=two"], cwd=tmp_path)
    assert two.returncode == 0, two.stderr[-3000:]
    assert first_loss(tmp_path / "two") == pytest.approx(first_loss(tmp_path / "one"), abs=1e-4)
    done = torchrun([*DDP_TINY, "hydra.run.dir=four"], cwd=tmp_path, nproc=4)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "4 processes (DDP)" in done.stdout
    assert first_loss(tmp_path / "four") == pytest.approx(first_loss(one_process_run), abs=1e-4)
    refused = torchrun([*TINY, "batch.micro_batch_size=3", "hydra.run.dir=refused"], cwd=tmp_path)
    assert refused.returncode != 0
    errors = {line for line in refused.stderr.splitlines() if line.startswith("error:")}
    assert errors == {"error: batch.micro_batch_size=3 x batch.grad_accum=1 does not split evenly over "
                      "2 processes: each micro-batch's rows would be split 2 ways; use a "
                      "batch.micro_batch_size divisible by 2, or a batch.grad_accum that is a multiple of 2"}
    assert "ConfigError" not in refused.stderr  # no traceback of ours (torchrun prints its own)
    assert not (tmp_path / "refused" / "metrics.jsonl").exists()  # refused before any step


def test_an_optuna_trial_reports_and_is_pruned_alike_on_two_processes(tmp_path):
    """A trial's pruner sees the same reports at the same token counts from one process and
    from two, and both runs stop as pruned at the same step."""
    storage = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.create_study(study_name="s", storage=storage)
    study.set_user_attr("llm_sweep.pruner", {"name": "median", "min_resource": 0})
    for _ in range(5):  # the median pruner's start-up trials, far better than these runs can be
        done = study.ask()
        for tokens in range(0, 4000, 128):
            done.report(0.1, tokens)
        study.tell(done, 0.1)
    args = [*TINY, "batch.grad_accum=2", "budget.steps=12", "eval.interval=2", "tracking.log_interval=1"]
    runs = {}
    for world_size in (1, 2):
        trial = study.ask()
        env = {"LLM_SWEEP_OPTUNA_TRIAL": str(trial.number), "LLM_SWEEP_OPTUNA_STORAGE": storage,
               "LLM_SWEEP_OPTUNA_STUDY": "s"}
        run_dir = f"hydra.run.dir=w{world_size}"
        done = (run_app([*args, run_dir], cwd=tmp_path, env=env) if world_size == 1
                else torchrun([*args, run_dir], cwd=tmp_path, env=env))
        assert done.returncode == 0, done.stderr[-3000:]
        status = json.loads((tmp_path / f"w{world_size}" / "status.json").read_text())
        assert status["status"] == "pruned", status
        runs[world_size] = (status["error"], study._storage.get_trial(trial._trial_id).intermediate_values)
    assert runs[1][0].split(" with ")[0] == runs[2][0].split(" with ")[0]  # "pruned at step N (T tokens)"
    one, two = runs[1][1], runs[2][1]
    assert sorted(one) == sorted(two) and len(one) >= 1
    assert all(two[tokens] == pytest.approx(one[tokens], abs=2e-3) for tokens in one)


def test_bench_on_two_processes_runs_both_optimizers(tmp_path):
    args = [*[o for o in TINY if not o.startswith("budget")], "bench.warmup_steps=1", "bench.steps=2",
            "bench.modes=[eager-fp32]", "peak_flops=1e12"]
    for optim in ("adamw", "sophiag"):
        done = torchrun([*args, f"optim={optim}", "optim.hessian_interval=1", f"hydra.run.dir={optim}"],
                        cwd=tmp_path, module="llm_sweep.bench")
        assert done.returncode == 0, done.stderr[-3000:]
        bench = json.loads((tmp_path / optim / "bench.json").read_text())
        assert (bench["world_size"], bench["ddp"]) == (2, True)
        assert bench["records"][0]["tokens_per_s"] > 0


def test_a_local_parallel_trial_of_two_tasks_trains_one_ddp_run(tmp_path, one_process_run):
    """hydra/launcher=local_parallel with tasks_per_node=2: submitit's local tasks join one
    process group (no GPU here, so no GPU claim) and give the one-process first-step loss."""
    done = run_app(["--multirun", "hydra/launcher=local_parallel", "hydra.launcher.tasks_per_node=2",
                    *DDP_TINY, "hydra.sweep.dir=sweep"], cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    logs = "".join(p.read_text() for p in (tmp_path / "sweep" / ".submitit").rglob("*_log.out"))
    assert "2 processes (DDP)" in logs
    assert first_loss(tmp_path / "sweep" / "0") == pytest.approx(first_loss(one_process_run), abs=1e-4)
