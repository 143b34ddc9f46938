"""The training function: one loop, read top to bottom.

build the parts (resumed if a checkpoint says so) -> [lr from budget progress -> one
optimizer step -> log / evaluate / checkpoint when due] until the budget binds or a stop
is requested -> final evaluation -> summary. Everything it measures goes to its sinks.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from llm_sweep.config import RunConfig
from llm_sweep.errors import TrainingDiverged
from llm_sweep.run_record import (ELAPSED_S, LR, METRICS_FILE, SUMMARY_FILE, TOKENS,
                                  TOKENS_PER_PARAM, TOKENS_PER_S, TRAIN_LOSS, VAL_ACC, VAL_LOSS,
                                  VAL_PPL, write_json)
from llm_sweep.training.metrics import MetricsWindow
from llm_sweep.training.periodic import CheckpointSchedule, EvalSchedule, Every
from llm_sweep.training.progress import ProgressBar
from llm_sweep.training.setup import TrainingParts, build_parts
from llm_sweep.training.sinks import JsonlSink, Sink, announce, emit
from llm_sweep.training.steps import evaluate, forward_backward, optimizer_step, parameters_finite
from llm_sweep.training.stop import BUDGET, PREEMPTED, StopRequest
from llm_sweep.training.summary import build_summary, final_metrics, format_summary


def train(run: RunConfig, run_dir: Path, sinks: Sequence[Sink] = (),
          stop: Optional[StopRequest] = None) -> dict[str, Any]:
    """Train until the binding budget is spent; returns the summary, also in summary.json.

    A stop requested for another reason ends the run early: preempted (a checkpoint is
    saved, then RunInterrupted) or pruned (RunPruned).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    stop = stop if stop is not None else StopRequest()
    parts = build_parts(run, run_dir)
    sinks = [JsonlSink(run_dir / METRICS_FILE), *sinks]
    announce(sinks, parts.info())
    print(parts.describe(), flush=True)
    window = MetricsWindow(parts.tokens_per_step, parts.flops_per_token, parts.peak_flops)
    logs, evals, saves = Every(run.tracking.log_interval), EvalSchedule(run.eval), CheckpointSchedule(run.checkpoint)
    bar, spent, budget = ProgressBar(), parts.spent, parts.budget
    first_step, step_s = spent.step, 0.0
    while True:
        if budget.done(spent):
            stop.request(BUDGET)
        if stop.requested:
            break
        lr = parts.set_lr(budget.progress_after_step(spent, parts.tokens_per_step, step_s))
        compiling = parts.compiled and spent.step == first_step
        loss, seconds, extras = timed_step(parts, sync=compiling or logs.due(spent.step + 1))
        spent.add_step(parts.tokens_per_step, seconds, compiling)
        window.add(loss, seconds, timed=not compiling)
        step_s = step_s if compiling else seconds
        last = budget.done(spent)
        bar.update(budget.progress(spent))
        if logs.due(spent.step) or last:
            log_train(parts, window, sinks, bar, {LR: lr, **extras})
        if evals.due(spent.step, last):
            metrics = run_eval(parts, sinks, run.eval.batches)
            bar.write(f"step {spent.step}: " + format_eval(metrics))
        if saves.due(spent.step):
            save_if_finite(parts, window, run_dir)
    bar.close()
    parts.batches.close()
    if stop.reason == PREEMPTED and parts.saved_step != spent.step:
        save_if_finite(parts, window, run_dir)
    stop.raise_if_interrupted(spent.step)
    final = run_eval(parts, [], run.eval.final_batches)
    parts.save(run_dir, final=True)
    summary = build_summary(parts, final)
    emit(sinks, final_metrics(summary, final), spent.step)
    write_json(run_dir / SUMMARY_FILE, summary)
    print(format_summary(summary), flush=True)
    return summary


def timed_step(parts: TrainingParts, sync: bool) -> tuple[torch.Tensor, float, dict[str, Any]]:
    """One optimizer step over the step's micro-batches: (mean loss on the device, seconds,
    the optimizer hook's metrics). The device is synchronized only when `sync` (where a
    timing is read), so other steps queue their kernels without waiting on the host."""
    start = time.perf_counter()
    batches = parts.step_batches(parts.spent.step)
    loss = forward_backward(parts.step_model, batches, parts.autocast)
    optimizer_step(parts.model, parts.optimizer, parts.hook, parts.run.optim.grad_clip)
    extras = parts.hook.after_step(parts.spent.step, parts.step_model, batches[-1][0], parts.autocast)
    if sync and parts.device.type == "cuda":
        torch.cuda.synchronize(parts.device)
    return loss, time.perf_counter() - start, extras


def log_train(parts: TrainingParts, window: MetricsWindow, sinks: Sequence[Sink], bar: ProgressBar,
              extras: dict[str, Any]) -> None:
    """Emit the window's train metrics with the run's progress; a non-finite loss ends the run."""
    spent = parts.spent
    metrics = window.flush()
    loss = metrics[TRAIN_LOSS]
    if not math.isfinite(loss):
        raise TrainingDiverged(f"train/loss became {loss} at step {spent.step}; "
                               "the last good checkpoint is kept")
    emit(sinks, {**metrics, **extras, TOKENS: spent.tokens,
                 TOKENS_PER_PARAM: spent.tokens / parts.params,
                 ELAPSED_S: parts.budget.elapsed_s(spent)}, spent.step)
    bar.show(loss, metrics.get(TOKENS_PER_S))


def run_eval(parts: TrainingParts, sinks: Sequence[Sink], max_batches: Optional[int]) -> dict[str, float]:
    """Evaluate on the validation split (its time counted apart) and emit the result."""
    batch, start = parts.run.batch, time.perf_counter()
    metrics = evaluate(parts.step_model, parts.splits.val, batch.micro_batch_size, batch.seq_len,
                       parts.device, parts.autocast, max_batches)
    parts.spent.eval_s += time.perf_counter() - start
    if not math.isfinite(metrics[VAL_LOSS]):
        raise TrainingDiverged(f"val/loss became {metrics[VAL_LOSS]} at step {parts.spent.step}")
    return emit(sinks, metrics, parts.spent.step)


def format_eval(metrics: dict[str, float]) -> str:
    return f"val/loss {metrics[VAL_LOSS]:.4f} ppl {metrics[VAL_PPL]:.2f} acc {metrics[VAL_ACC]:.4f}"


def save_if_finite(parts: TrainingParts, window: MetricsWindow, run_dir: Path) -> None:
    """Checkpoint, unless the last step's loss or a parameter is not finite: then the run
    stops and the last good checkpoint stays the newest."""
    last = window.last_loss
    if (last is not None and not bool(torch.isfinite(last))) or not parameters_finite(parts.model):
        raise TrainingDiverged(f"train/loss became non-finite by step {parts.spent.step}; "
                               "the last good checkpoint is kept")
    parts.save(run_dir)
