"""The training function: one loop, read top to bottom.

build the parts (resumed if a checkpoint says so) -> [lr from budget progress -> one
optimizer step -> log / evaluate / checkpoint when due] until the budget binds or a stop
is requested -> final evaluation -> summary. Everything it measures goes to its sinks.
"""
from __future__ import annotations

import functools
import math
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from llm_sweep.core import console
from llm_sweep.core.config import RunConfig
from llm_sweep.core.errors import TrainingDiverged
from llm_sweep.core.run_record import (ELAPSED_S, LR, METRICS_FILE, PEAK_MEM_GB, SUMMARY_FILE,
                                       TOKENS, TOKENS_PER_PARAM, TOKENS_PER_S, TRAIN_LOSS, VAL_ACC,
                                       VAL_LOSS, VAL_PPL, write_json)
from llm_sweep.core.world import World
from llm_sweep.data.shards import eval_batch_count
from llm_sweep.hardware import peak_memory_bytes
from llm_sweep.training.distributed import agree_max, mean_over_world
from llm_sweep.training.metrics import MetricsWindow
from llm_sweep.training.periodic import CheckpointSchedule, EvalSchedule, Every
from llm_sweep.training.progress import ProgressBar
from llm_sweep.training.setup import TrainingParts, build_parts
from llm_sweep.training.sinks import JsonlSink, Sink, announce, emit
from llm_sweep.training.steps import evaluate, forward_backward, optimizer_step, parameters_finite
from llm_sweep.training.stop import BUDGET, PREEMPTED, StopRequest, code_of
from llm_sweep.training.summary import build_summary, final_metrics, format_summary

# The first step compiles the model: inductor's cache makes later runs on the machine faster.
COMPILING = "compiling the model (the first run on this machine can take 1-2 min; later runs reuse the cache)"


def train(run: RunConfig, run_dir: Path, sinks: Sequence[Sink] = (),
          stop: Optional[StopRequest] = None, world: World = World()) -> dict[str, Any]:
    """Train until the binding budget is spent; returns the summary, also in summary.json.

    A stop requested for another reason ends the run early: preempted (a checkpoint is
    saved, then RunInterrupted) or pruned (RunPruned). Over several processes (`world`,
    joined by the entry point), rank 0 alone writes and prints; every process takes each
    decision at the same step (`settle`).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    stop = stop if stop is not None else StopRequest()
    parts = build_parts(run, run_dir, world)
    main = parts.world.is_main
    sinks = [JsonlSink(run_dir / METRICS_FILE), *sinks] if main else []
    announce(sinks, parts.info())
    window = MetricsWindow(parts.tokens_per_step, parts.flops_per_token, parts.peak_flops,
                           mean=functools.partial(mean_over_world, world=parts.world))
    with ProgressBar(enabled=main) as bar:  # closed on any error too: its line ends first
        bar.write(parts.describe())
        stopping = train_steps(parts, stop, sinks, window, bar, run_dir)
    parts.batches.close()
    if stopping == PREEMPTED and parts.saved_step != parts.spent.step:
        save_if_finite(parts, window, run_dir)
    stop.raise_if_interrupted(parts.spent.step)
    if main:
        console.show(f"evaluating on the validation split ({describe_eval(parts, run.eval.final_batches)})")
    final = run_eval(parts, [], run.eval.final_batches)
    if run.checkpoint.final:
        parts.save(run_dir, final=True)
    summary = build_summary(parts, final)
    emit(sinks, final_metrics(summary, final), parts.spent.step)
    if main:
        write_json(run_dir / SUMMARY_FILE, summary)
        console.show(format_summary(summary))
    return summary


def train_steps(parts: TrainingParts, stop: StopRequest, sinks: Sequence[Sink], window: MetricsWindow,
                bar: ProgressBar, run_dir: Path) -> str:
    """[lr from budget progress -> one optimizer step -> log / evaluate / checkpoint when
    due] until a stop is requested; returns its reason."""
    run, spent, first_step = parts.run, parts.spent, parts.spent.step
    logs, evals, saves = Every(run.tracking.log_interval), EvalSchedule(run.eval), CheckpointSchedule(run.checkpoint)
    stopping, step_s = settle(parts, stop, 0.0)
    while stopping is None:
        lr = parts.set_lr(parts.budget.progress_after_step(spent, parts.tokens_per_step, step_s))
        compiling = parts.compiled and spent.step == first_step
        if compiling:
            bar.write(COMPILING)
        loss, seconds, extras = timed_step(parts, sync=compiling or logs.due(spent.step + 1))
        spent.add_step(parts.tokens_per_step, seconds, compiling)
        if compiling:
            bar.write(f"compiled in {seconds:.1f} s; training")
        window.add(loss, seconds, timed=not compiling)
        stopping, step_s = settle(parts, stop, step_s if compiling else seconds)
        bar.update(parts.budget.progress(spent))
        if logs.due(spent.step) or stopping:
            log_train(parts, window, sinks, bar, {LR: lr, **extras})
        if evals.due(spent.step, last=stopping is not None):
            bar.write(f"step {spent.step}: " + format_eval(run_eval(parts, sinks, run.eval.batches)))
        if saves.due(spent.step):
            save_if_finite(parts, window, run_dir)
    return stopping


def describe_eval(parts: TrainingParts, max_batches: Optional[int]) -> str:
    """The final evaluation's size: it can take as long as a short run trains."""
    batch = parts.run.batch
    windows = eval_batch_count(len(parts.splits.val), batch.micro_batch_size, batch.seq_len, max_batches)
    return f"{windows:,} batches of {batch.micro_batch_size} x {batch.seq_len} tokens"


def settle(parts: TrainingParts, stop: StopRequest, step_s: float) -> tuple[Optional[str], float]:
    """Whether, and why, the run stops now, and the step time that sets the next lr. Over
    several processes they agree first, on the slowest clocks and on the highest stop
    reason any of them has, so every rank decides the same at the same step."""
    spent, budget = parts.spent, parts.budget
    if budget.done(spent):
        stop.request(BUDGET)
    if parts.world.distributed:
        sent = stop.code
        code, spent.train_s, spent.compile_s, spent.eval_s, step_s = agree_max(
            [sent, spent.train_s, spent.compile_s, spent.eval_s, step_s], parts.world)
        if budget.done(spent):  # the agreed clocks may complete a time budget, alike everywhere
            code = max(code, code_of(BUDGET))
        stop.adopt(int(code), sent)
    return stop.reason, step_s


def timed_step(parts: TrainingParts, sync: bool) -> tuple[torch.Tensor, float, dict[str, Any]]:
    """One optimizer step over the step's micro-batches: (mean loss on the device, seconds,
    the optimizer hook's metrics). The device is synchronized only when `sync` (where a
    timing is read), so other steps queue their kernels without waiting on the host."""
    start = time.perf_counter()
    batches = parts.step_batches(parts.spent.step)
    loss = forward_backward(parts.step_model, batches, parts.autocast)
    optimizer_step(parts.model, parts.optimizer, parts.hook, parts.run.optim.grad_clip)
    first_row, weight = parts.share.last_micro_batch(parts.run.batch.grad_accum)
    extras = parts.hook.after_step(parts.spent.step, parts.step_model, batches[-1][0], parts.autocast,
                                   first_row, weight)
    if sync and parts.device.type == "cuda":
        torch.cuda.synchronize(parts.device)
    return loss, time.perf_counter() - start, extras


def log_train(parts: TrainingParts, window: MetricsWindow, sinks: Sequence[Sink], bar: ProgressBar,
              extras: dict[str, Any]) -> None:
    """Emit the window's train metrics with the run's progress; a non-finite loss ends the run."""
    spent = parts.spent
    metrics = window.flush()
    (peak_bytes,) = agree_max([float(peak_memory_bytes(parts.device))], parts.world)
    metrics[PEAK_MEM_GB] = peak_bytes / 2**30  # the largest of any process
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
    metrics = evaluate(parts.eval_model, parts.splits.val, batch.micro_batch_size, batch.seq_len,
                       parts.device, parts.autocast, max_batches, parts.world)
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
    finite = (last is None or bool(torch.isfinite(last))) and parameters_finite(parts.model)
    if agree_max([0.0 if finite else 1.0], parts.world)[0]:  # non-finite on any process
        raise TrainingDiverged(f"train/loss became non-finite by step {parts.spent.step}; "
                               "the last good checkpoint is kept")
    parts.save(run_dir)
