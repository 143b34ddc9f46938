"""A compute budget in FLOPs (flops_per_token x tokens, as MFU counts them) and a run on the
bytes tokenizer."""
from __future__ import annotations

import math

import pytest
from test_train import records, tiny_run

from llm_sweep.core.budget import Budget, Spent
from llm_sweep.core.config import BudgetConfig
from llm_sweep.core.size import flops_per_token
from llm_sweep.training.loop import train

TOKENS_PER_STEP = 4 * 32  # TINY's batch


def test_a_flop_budget_binds_at_tokens_times_flops_per_token():
    budget = Budget(BudgetConfig(flops=1e6, steps=100), flops_per_token=1000)
    spent = Spent(step=5, tokens=600)
    assert budget.fractions(spent) == {"steps": 0.05, "flops": 0.6}
    assert budget.binding(spent) == "flops" and not budget.done(spent)
    assert budget.done(Spent(step=6, tokens=1000))
    assert budget.progress_after_step(Spent(step=9, tokens=900), 100, 0.1) == 1.0


def test_a_flop_budget_needs_the_models_flops_per_token():
    with pytest.raises(ValueError, match="flops_per_token"):
        Budget(BudgetConfig(flops=1e6))


@pytest.mark.slow
def test_a_flop_budget_run_stops_within_one_step_with_the_schedule_at_its_end(tmp_path):
    per_token = flops_per_token(tiny_run().model, 32)
    budget = 7.5 * TOKENS_PER_STEP * per_token  # binds during the 8th step
    run = tiny_run("budget.steps=null", f"budget.flops={budget!r}", "optim.lr=2e-3",
                   "schedule.min_lr_ratio=0.1")
    summary = train(run, tmp_path)
    step_flops = TOKENS_PER_STEP * per_token
    assert summary["binding_budget"] == "flops" and summary["steps"] == 8
    assert budget <= summary["flops"] < budget + step_flops
    assert summary["flops"] == summary["tokens"] * per_token
    final = [r for r in records(tmp_path) if "final/flops" in r]
    assert [r["final/flops"] for r in final] == [summary["flops"]]
    lrs = [r["lr"] for r in records(tmp_path) if "lr" in r]
    assert lrs[-1] == pytest.approx(2e-4, rel=1e-9) and min(lrs) == lrs[-1]


@pytest.mark.slow
def test_a_bytes_run_trains_with_a_small_vocabulary(tmp_path):
    run = tiny_run("data.tokenizer=bytes", "budget.steps=20", "optim.lr=3e-3")
    assert run.model.vocab_size == 320
    summary = train(run, tmp_path)
    assert summary["params"] - summary["non_embedding_params"] == 320 * 64  # tied embedding
    assert summary["steps"] == 20 and summary["val_loss"] < math.log(256)
