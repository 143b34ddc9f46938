"""Every feature a user can combine with torchrun or tasks_per_node, at world size 1, 2 and 4
(Gloo, CPU, real processes): each gives the one-process result, or is refused up front
with one line naming the keys.

The module's commands run once, each in processes forked from one that has done their
imports (tests/fixtures/c_fork_server.py), every rank joining through torch's env://
rendezvous with the variables torchrun exports (tests/test_distributed.py runs torchrun
itself): one process trains the matrix and an Optuna trial; four ranks train the run to
resume, uninterrupted and preempted; two ranks train the matrix, resume the runs preempted
at world sizes 1 and 4, and run a refused batch, an Optuna trial and the bench of both
optimizers."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
import torch

from conftest import REPO, TINY
from ddp_matrix import BASE, CASES, RESUMED, first_loss
from fixtures.c_fork_server import APP, ForkServer

pytestmark = pytest.mark.slow
MATRIX = REPO / "tests" / "ddp_matrix.py"
PRELOAD = [*APP, "torch._inductor.compile_fx", "llm_sweep.bench.cli", "hydra_plugins.llm_sweep_optuna.pruning",
           "optuna", "submitit"]
TIMEOUT = ["distributed.timeout=60s"]  # a rank that fails alone: the others stop in a minute
OPTUNA_TRIAL = [*TINY, "batch.grad_accum=2", "budget.steps=12", "eval.interval=2", "tracking.log_interval=1",
                *TIMEOUT]
REFUSED = [*TINY, "batch.micro_batch_size=3", *TIMEOUT, "hydra.run.dir=refused"]
BENCH = [*[o for o in TINY if not o.startswith("budget")], "bench.warmup_steps=1", "bench.steps=2",
         "bench.modes=[eager-fp32]", "peak_flops=1e12", *TIMEOUT]
OPTIMIZERS = ("adamw", "sophiag")
ONE, FOUR, TWO = 1, 4, 2  # the launches, by world size


@dataclass
class Launches:
    """The module's launches: their folder, each command's per-rank results ({"rc", "out",
    "cpu_s"}) by world size, and the Optuna study with the trial of each world size."""

    out: Path
    results: dict[int, list[list[dict]]]
    study: optuna.Study
    trials: dict[int, optuna.Trial]


def optuna_study(storage: str) -> optuna.Study:
    """A study whose median pruner has seen five trials far better than these runs can be."""
    study = optuna.create_study(study_name="s", storage=storage)
    study.set_user_attr("llm_sweep.pruner", {"name": "median", "min_resource": 0})
    for _ in range(5):  # the median pruner's start-up trials
        done = study.ask()
        for tokens in range(0, 4000, 128):
            done.report(0.1, tokens)
        study.tell(done, 0.1)
    return study


def trial_job(trial: optuna.Trial, storage: str, world_size: int) -> dict:
    env = {"LLM_SWEEP_OPTUNA_TRIAL": str(trial.number), "LLM_SWEEP_OPTUNA_STORAGE": storage,
           "LLM_SWEEP_OPTUNA_STUDY": "s"}
    return {"args": [*OPTUNA_TRIAL, f"hydra.run.dir=optuna_w{world_size}"], "env": env}


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> ForkServer:
    server = ForkServer(PRELOAD, tmp_path_factory.mktemp("fork_server"))
    yield server
    server.close()


@pytest.fixture(scope="module")
def matrix(tmp_path_factory, server) -> Launches:
    """One process trains; four ranks train the run to resume; two ranks train and resume the
    runs the others preempted, then run the commands of the other tests."""
    out = tmp_path_factory.mktemp("ddp_matrix")
    storage = f"sqlite:///{out}/optuna.db"
    study = optuna_study(storage)
    trials = {1: study.ask(), 2: study.ask()}
    matrix = lambda *phases: {"args": [str(out), *phases], "script": MATRIX, "module": None}
    bench = [{"args": [*BENCH, f"optim={optim}", "optim.hessian_interval=1", f"hydra.run.dir={optim}"],
              "module": "llm_sweep.bench"} for optim in OPTIMIZERS]
    launches = [(ONE, [matrix("train"), trial_job(trials[1], storage, 1)]), (FOUR, [matrix("reference")]),
                (TWO, [matrix("train", "resume:1", "resume:4"), {"args": REFUSED}, trial_job(trials[2], storage, 2),
                       *bench])]
    results = {}
    for world_size, commands in launches:
        results[world_size] = [server.run_ranks(cwd=out, world_size=world_size, **command) for command in commands]
        for rank in results[world_size][0]:  # the matrix ran on every rank
            assert rank["rc"] == 0, rank["out"][-4000:]
    return Launches(out, results, study, trials)


def result(matrix: Launches, world_size: int, case: str) -> dict:
    return json.loads((matrix.out / f"w{world_size}" / f"{case}.json").read_text())


def command(matrix: Launches, launch: int, index: int) -> list[dict]:
    """Every rank's {"rc", "out", "cpu_s"} of the launch's `index`-th command."""
    return matrix.results[launch][index]


@pytest.mark.parametrize("case", [name for name in CASES if name != "adamw_time"] + ["default_batch"])
def test_two_ranks_give_the_one_process_result(matrix, case):
    """default_batch: the default config (batch.grad_accum=1), each rank runs half the rows of
    every micro-batch."""
    one, two = result(matrix, 1, case), result(matrix, 2, case)
    assert two["world_size"] == 2 and one["world_size"] == 1
    assert two["first_loss"] == pytest.approx(one["first_loss"], abs=1e-4)
    assert two["val_loss"] == pytest.approx(one["val_loss"], abs=2e-3)
    assert (two["steps"], two["tokens"], two["binding_budget"]) == (one["steps"], one["tokens"],
                                                                   one["binding_budget"])


def test_four_ranks_in_two_groups_of_two_give_the_one_process_result(matrix):
    """batch.grad_accum=2 on 4 processes: two groups of two, each pair splitting the rows of
    its micro-batch."""
    assert "4 processes (DDP)" in command(matrix, FOUR, 0)[0]["out"]
    one, four = result(matrix, 1, "uninterrupted"), result(matrix, 4, "uninterrupted")
    assert four["world_size"] == 4
    assert four["first_loss"] == pytest.approx(one["first_loss"], abs=1e-4)
    assert four["val_loss"] == pytest.approx(one["val_loss"], abs=2e-3)
    assert (four["steps"], four["tokens"]) == (one["steps"], one["tokens"])


def test_a_time_budget_binds_at_both_world_sizes_from_the_same_first_step(matrix):
    one, two = result(matrix, 1, "adamw_time"), result(matrix, 2, "adamw_time")
    assert two["first_loss"] == pytest.approx(one["first_loss"], abs=1e-4)
    assert one["binding_budget"] == two["binding_budget"] == "time"


def train_losses(run_dir: Path) -> dict[int, float]:
    return {r["step"]: r["train/loss"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
            if "train/loss" in r}


@pytest.mark.parametrize("written_by,resumed_on", [(1, 2), (4, 2)])
def test_a_checkpoint_resumes_on_another_world_size_as_if_never_stopped(matrix, written_by, resumed_on):
    assert result(matrix, written_by, "preempted")["interrupted"]
    resumed = result(matrix, resumed_on, f"resumed_from_w{written_by}")
    whole = result(matrix, 1, "uninterrupted")
    assert resumed["val_loss"] == pytest.approx(whole["val_loss"], abs=2e-3)
    assert (resumed["steps"], resumed["tokens"]) == (whole["steps"], whole["tokens"])
    losses = train_losses(matrix.out / f"w{resumed_on}" / f"resumed_from_w{written_by}")
    reference = train_losses(matrix.out / "w1" / "uninterrupted")
    for step in range(5, whole["steps"] + 1):  # after the checkpoint
        assert losses[step] == pytest.approx(reference[step], abs=1e-4)


def test_a_ddp_trained_checkpoint_exports_with_the_same_logits(matrix, tmp_path):
    transformers = pytest.importorskip("transformers")
    from llm_sweep.export import main as export
    from llm_sweep.training.checkpoint import load_model

    run_dir = matrix.out / "w2" / "adamw_cosine_steps"
    export([str(run_dir), str(tmp_path / "hf")])  # the command's own function, in this process
    ours = load_model(run_dir).eval()
    theirs = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    idx = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (ours(idx) - theirs(idx).logits).abs().max() < 1e-4
        one_process = load_model(matrix.out / "w1" / "adamw_cosine_steps").eval()
        # The same training: fp32 reduction noise, amplified by Adam's normalized steps.
        assert (ours(idx) - one_process(idx)).abs().max() < 1e-2


def test_a_batch_whose_rows_cannot_split_is_refused_in_one_line_on_every_rank(matrix):
    message = ("error: batch.micro_batch_size=3 x batch.grad_accum=1 does not split evenly over "
               "2 processes: each micro-batch's rows would be split 2 ways; use a "
               "batch.micro_batch_size divisible by 2, or a batch.grad_accum that is a multiple of 2")
    for refused in command(matrix, TWO, 1):
        assert refused["rc"] == 2, refused["out"][-3000:]
        assert {line for line in refused["out"].splitlines() if line.startswith("error:")} == {message}
        assert "Traceback" not in refused["out"] and "ConfigError" not in refused["out"]
    assert not (matrix.out / "refused" / "metrics.jsonl").exists()  # refused before any step


def test_an_optuna_trial_reports_and_is_pruned_alike_on_two_processes(matrix):
    """A trial's pruner sees the same reports at the same token counts from one process and
    from two, and both runs stop as pruned at the same step."""
    runs = {}
    for world_size, (launch, index) in ((1, (ONE, 1)), (2, (TWO, 2))):
        for done in command(matrix, launch, index):
            assert done["rc"] == 0, done["out"][-3000:]
        status = json.loads((matrix.out / f"optuna_w{world_size}" / "status.json").read_text())
        assert status["status"] == "pruned", status
        trial_id = matrix.trials[world_size]._trial_id
        runs[world_size] = (status["error"], matrix.study._storage.get_trial(trial_id).intermediate_values)
    assert runs[1][0].split(" with ")[0] == runs[2][0].split(" with ")[0]  # "pruned at step N (T tokens)"
    one, two = runs[1][1], runs[2][1]
    assert sorted(one) == sorted(two) and len(one) >= 1
    assert all(two[tokens] == pytest.approx(one[tokens], abs=2e-3) for tokens in one)


@pytest.mark.parametrize("index,optim", [(3, "adamw"), (4, "sophiag")])
def test_bench_on_two_processes_runs_both_optimizers(matrix, index, optim):
    for done in command(matrix, TWO, index):
        assert done["rc"] == 0, done["out"][-3000:]
    bench = json.loads((matrix.out / optim / "bench.json").read_text())
    assert (bench["world_size"], bench["ddp"]) == (2, True)
    assert bench["records"][0]["tokens_per_s"] > 0


def test_a_local_parallel_trial_of_two_tasks_trains_one_ddp_run(matrix, server, tmp_path):
    """hydra/launcher=local_parallel with tasks_per_node=2: submitit's local tasks (processes
    it starts itself) join one process group (no GPU here, so no GPU claim) and give the
    one-process result of the same config."""
    done = server.run(["--multirun", "hydra/launcher=local_parallel", "hydra.launcher.tasks_per_node=2",
                       *BASE, *RESUMED, "hydra.sweep.dir=sweep"], tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    logs = "".join(p.read_text() for p in (tmp_path / "sweep" / ".submitit").rglob("*_log.out"))
    assert "2 processes (DDP)" in logs
    one = result(matrix, 1, "uninterrupted")
    summary = json.loads((tmp_path / "sweep" / "0" / "summary.json").read_text())
    assert first_loss(tmp_path / "sweep" / "0") == pytest.approx(one["first_loss"], abs=1e-4)
    assert summary["val_loss"] == pytest.approx(one["val_loss"], abs=2e-3)
    assert (summary["steps"], summary["tokens"]) == (one["steps"], one["tokens"])
