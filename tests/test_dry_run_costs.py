"""A dry run's price of a job: training at the rate of the device it runs on, plus its
evaluations, start-up and compile, checked against rates set by hand."""
from __future__ import annotations

import pytest

from llm_sweep.core.budget import BudgetConfig
from llm_sweep.core.config import BatchConfig, EvalConfig, RunConfig
from llm_sweep.core.model_config import ModelConfig
from llm_sweep.sweeping.costs import COMPILE_S, EVAL_SPEEDUP, START_UP_S, Throughput, eval_tokens, job_cost
from llm_sweep.sweeping.measured_rate import probe_each_shape

BATCH = BatchConfig(micro_batch_size=4, grad_accum=2, seq_len=32)  # 256 tokens per step, 128 per eval batch


def run(budget: BudgetConfig, final_batches=None, interval=10) -> RunConfig:
    return RunConfig(model=ModelConfig(n_layer=1, n_embd=64, head_dim=64, vocab_size=257), batch=BATCH,
                     budget=budget, eval=EvalConfig(interval=interval, batches=3, final_batches=final_batches))


def measured(rate: float) -> Throughput:
    return Throughput(0.0, 0.0, "by hand", measured=lambda _run: rate)


def test_a_measured_rate_prices_training_evaluations_start_up_and_compile():
    job = run(BudgetConfig(time="60s"), final_batches=5)
    cost = job_cost(job, measured(1000.0), compiles=True)
    assert cost.binding == "time" and cost.tokens == pytest.approx(60_000)
    steps = int(cost.tokens // 256)
    evaluated = (steps // 10) * 3 * 128 + 5 * 128
    assert eval_tokens(job, steps, None) == evaluated
    assert cost.seconds == pytest.approx(cost.tokens / 1000.0)
    assert cost.overhead_s == pytest.approx(START_UP_S + COMPILE_S + evaluated / (EVAL_SPEEDUP * 1000.0))
    assert cost.gpu_hours == pytest.approx((cost.seconds + cost.overhead_s) / 3600)
    assert job_cost(job, measured(1000.0), compiles=False).overhead_s == pytest.approx(cost.overhead_s - COMPILE_S)


def test_the_final_evaluation_reads_the_whole_split_when_its_size_is_known():
    job = run(BudgetConfig(steps=40), interval=0)
    assert eval_tokens(job, 40, val_tokens=1000) == 7 * 128  # whole batches of 4 x 32
    assert eval_tokens(job, 40, val_tokens=100) == 128  # a split shorter than a batch: one
    unknown = job_cost(job, measured(500.0), val_tokens=None)
    assert not unknown.eval_priced and unknown.overhead_s == pytest.approx(START_UP_S)
    known = job_cost(job, measured(500.0), val_tokens=1000)
    assert known.eval_priced and known.overhead_s == pytest.approx(START_UP_S + 7 * 128 / (EVAL_SPEEDUP * 500.0))


def test_the_probe_measures_each_shape_once():
    rate = probe_each_shape()
    job = run(BudgetConfig(steps=1))
    first = rate(job)
    assert first > 0 and rate(job) == first  # measured once, then remembered
    wider = RunConfig(model=ModelConfig(n_layer=1, n_embd=128, head_dim=64, vocab_size=257), batch=BATCH)
    assert rate(wider) != first
