"""The training function: one loop, read top to bottom.

build -> (resume) -> [lr from budget progress -> accumulate grads -> clip -> step -> hook
-> log / evaluate / checkpoint] until the first budget binds -> final evaluation -> summary.
"""
from __future__ import annotations

import json
import math
import random
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterable, Optional, Protocol

import torch
from torch import nn
from tqdm.auto import tqdm

from llm_sweep.budget import Budget, Spent
from llm_sweep.checkpoint import latest_valid_checkpoint, load_checkpoint, save_checkpoint, unwrap
from llm_sweep.config import RunConfig
from llm_sweep.data import BatchSampler, TokenShard, iter_eval_batches, prepare_dataset
from llm_sweep.errors import ConfigError, TrainingDiverged
from llm_sweep.hardware import (autocast_for, configure_backends, device_name, peak_flops,
                                resolve_device, resolve_dtype)
from llm_sweep.models import build_model
from llm_sweep.optim import build_optimizer, lr_at, set_lr

_STOP = threading.Event()


class RunInterrupted(Exception):
    """Training stopped on request (a preemption signal) after saving a checkpoint."""


class MetricSink(Protocol):
    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...


def request_stop() -> None:
    """Ask the running loop to checkpoint and stop at the next step boundary (signal-safe)."""
    _STOP.set()


class JsonlSink:
    """Appends every metric record to `metrics.jsonl` in the run directory."""

    def __init__(self, path: Path):
        self.path = path

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": step, **metrics}) + "\n")


@torch.no_grad()
def evaluate(model: nn.Module, shard: TokenShard, run: RunConfig, device: torch.device,
             autocast, max_batches: Optional[int]) -> dict[str, float]:
    """Mean next-token loss and argmax accuracy over fixed windows of the validation split."""
    model.eval()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    count = 0
    for x, y in iter_eval_batches(shard, run.batch.micro_batch_size, run.batch.seq_len,
                                  max_batches=max_batches, device=device):
        with autocast():
            logits, loss = model(x, y)
        loss_sum += loss.double() * y.numel()
        correct += (logits.argmax(dim=-1) == y).sum()
        count += y.numel()
    model.train()
    loss = (loss_sum / count).item()
    return {"val/loss": loss, "val/ppl": math.exp(min(loss, 700.0)),
            "val/acc": correct.item() / count}


def forward_backward(model: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]],
                     autocast) -> torch.Tensor:
    """Accumulate gradients over micro-batches; returns the mean loss as a device tensor."""
    total = torch.zeros((), device=batches[0][0].device)
    for x, y in batches:
        with autocast():
            _, loss = model(x, y, return_logits=False)  # the fused head + loss
        (loss / len(batches)).backward()
        total += loss.detach()
    return total / len(batches)


def optimizer_step(model: nn.Module, optimizer: torch.optim.Optimizer, hook, grad_clip: float) -> None:
    """Clip, step and clear gradients (the optimizer hook supplies step arguments)."""
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step(**hook.step_kwargs())
    optimizer.zero_grad(set_to_none=True)


def parameters_finite(model: nn.Module) -> bool:
    """One device-side reduction over all parameters (a single host sync)."""
    return bool(torch.stack([p.isfinite().all() for p in model.parameters()]).all())


def _emit(sinks: Iterable[MetricSink], metrics: dict[str, Any], step: int) -> dict[str, float]:
    values = {k: float(v) for k, v in metrics.items()}
    for sink in sinks:
        sink.log_metrics(values, step)
    return values


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _checkpoint_to_resume(run: RunConfig, run_dir: Path) -> Optional[dict[str, Any]]:
    if run.resume == "never":
        return None
    if run.resume == "auto":
        found = latest_valid_checkpoint(run_dir)
        return found[1] if found else None
    return load_checkpoint(Path(run.resume))


def train(run: RunConfig, run_dir: Path, sinks: Iterable[MetricSink] = ()) -> dict[str, Any]:
    """Train until the first budget binds; return the summary also written to summary.json."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    sinks = [JsonlSink(run_dir / "metrics.jsonl"), *sinks]
    _STOP.clear()
    device = resolve_device(run.device)
    configure_backends(device)
    torch.manual_seed(run.seed)
    random.seed(run.seed)
    dtype = resolve_dtype(device, run.dtype)
    autocast = autocast_for(device, dtype)

    splits = prepare_dataset(run.data)
    model = build_model(run.model).to(device)
    n_params = model.num_params()
    flops_per_token = model.flops_per_token(run.batch.seq_len)
    tokens_per_step = run.batch.tokens_per_step
    optimizer, hook = build_optimizer(model, run.optim, tokens_per_step, device.type)
    peak = peak_flops(device, dtype, run.peak_flops)
    budget, spent = Budget(run.budget), Spent()

    resumed = _checkpoint_to_resume(run, run_dir)
    if resumed is not None:
        if resumed["config"]["model"] != asdict(run.model):
            raise ConfigError(f"resume: the checkpoint in {run_dir} was trained with a different "
                              "model config; use resume=never or a new run directory")
        model.load_state_dict(resumed["model"])
        optimizer.load_state_dict(resumed["optimizer"])
        spent = Spent(**resumed["spent"])
        _set_rng_state(resumed["rng"])

    use_compile = run.compile if run.compile is not None else device.type == "cuda"
    step_model = torch.compile(model, mode=run.compile_mode) if use_compile else model
    sampler = BatchSampler(splits.train, run.batch.micro_batch_size, run.batch.seq_len,
                           seed=run.seed, device=device)
    print(f"model {run.model.name} ({run.model.arch}): {n_params:,} params | "
          f"{tokens_per_step:,} tokens/step ({run.batch.micro_batch_size} x {run.batch.grad_accum}"
          f" x {run.batch.seq_len}) | {device_name(device)} {dtype}"
          f"{' compiled' if use_compile else ''}"
          + (f" | resumed at step {spent.step}" if resumed else ""), flush=True)

    def save(final: bool = False) -> None:
        save_checkpoint(run_dir, spent.step, {
            "model": unwrap(model).state_dict(), "optimizer": optimizer.state_dict(),
            "spent": spent.to_dict(), "rng": _rng_state(), "config": asdict(run), "final": final,
        })

    def run_eval(max_batches: Optional[int]) -> dict[str, float]:
        t0 = time.perf_counter()
        metrics = evaluate(step_model, splits.val, run, device, autocast, max_batches)
        spent.eval_s += time.perf_counter() - t0
        if not math.isfinite(metrics["val/loss"]):
            raise TrainingDiverged(f"val/loss became {metrics['val/loss']} at step {spent.step}")
        return metrics

    log_every = max(1, run.tracking.log_interval)
    window_loss = torch.zeros((), device=device)
    window_steps, window_s = 0, 0.0
    bar = tqdm(total=100, unit="%", desc="train", bar_format="{l_bar}{bar}| {n:.0f}% [{elapsed}<{remaining}{postfix}]")
    compiled_yet, last_step_s = False, 0.0
    model.train()
    while not budget.done(spent):
        if _STOP.is_set():
            save()
            raise RunInterrupted(f"stopped at step {spent.step} on request; checkpoint saved")
        lr = lr_at(budget.progress_after_step(spent, tokens_per_step, last_step_s),
                   run.schedule, run.optim.lr)
        set_lr(optimizer, lr)
        first_compiled_step = use_compile and not compiled_yet
        compiled_yet = True
        t0 = time.perf_counter()
        batches = [sampler.get(spent.step, micro) for micro in range(run.batch.grad_accum)]
        window_loss += forward_backward(step_model, batches, autocast)
        optimizer_step(model, optimizer, hook, run.optim.grad_clip)
        hook_metrics = hook.after_step(spent.step, step_model, batches[-1][0], autocast)
        spent.step += 1
        spent.tokens += tokens_per_step
        if device.type == "cuda" and (first_compiled_step or spent.step % log_every == 0):
            torch.cuda.synchronize()  # only where a timing is read
        step_s = time.perf_counter() - t0
        last_step_s = step_s if not first_compiled_step else last_step_s
        if first_compiled_step:
            spent.compile_s += step_s
            spent.compile_steps += 1
        else:
            spent.train_s += step_s
            window_s += step_s
        window_steps += 1
        bar.n = 100 * budget.progress(spent)

        if spent.step % log_every == 0 or budget.done(spent):
            train_loss = window_loss.item() / window_steps
            if not math.isfinite(train_loss):
                raise TrainingDiverged(f"train/loss became {train_loss} at step {spent.step}; "
                                       "the last good checkpoint is kept")
            timed_steps = window_steps - int(first_compiled_step)
            tokens_per_s = timed_steps * tokens_per_step / window_s if window_s > 0 else 0.0
            _emit(sinks, {
                "train/loss": train_loss, "lr": lr,
                "perf/tokens_per_s": tokens_per_s,
                "perf/mfu": tokens_per_s * flops_per_token / peak,
                "perf/step_ms": 1000 * window_s / timed_steps if timed_steps else 0.0,
                "progress/tokens": spent.tokens,
                "progress/tokens_per_param": spent.tokens / n_params,
                "progress/elapsed_s": budget.elapsed_s(spent),
                **hook_metrics,
            }, spent.step)
            bar.set_postfix_str(f"loss {train_loss:.3f}, {tokens_per_s:,.0f} tok/s", refresh=True)
            window_loss.zero_()
            window_steps, window_s = 0, 0.0
        if run.eval.interval and spent.step % run.eval.interval == 0 and not budget.done(spent):
            metrics = _emit(sinks, run_eval(run.eval.batches), spent.step)
            bar.write(f"step {spent.step}: val/loss {metrics['val/loss']:.4f} "
                      f"ppl {metrics['val/ppl']:.2f} acc {metrics['val/acc']:.4f}")
        if run.checkpoint.interval and spent.step % run.checkpoint.interval == 0:
            if not (torch.isfinite(window_loss) and parameters_finite(model)):
                raise TrainingDiverged(f"train/loss became non-finite by step {spent.step}; "
                                       "the last good checkpoint is kept")
            save()
    bar.close()

    final = run_eval(run.eval.final_batches)
    save(final=True)
    summary = {
        "model": run.model.name, "arch": run.model.arch, "params": n_params,
        "non_embedding_params": model.num_params(non_embedding=True),
        "flops_per_token": flops_per_token, "tokens_per_step": tokens_per_step,
        "steps": spent.step, "tokens": spent.tokens,
        "tokens_per_param": spent.tokens / n_params,
        "tokens_per_s": (spent.step - spent.compile_steps) * tokens_per_step / spent.train_s
        if spent.train_s else 0.0,
        "binding_budget": budget.binding(spent), "device": device_name(device),
        "time_s": {"compile": spent.compile_s, "train": spent.train_s, "eval": spent.eval_s},
        "val_loss": final["val/loss"], "val_ppl": final["val/ppl"], "val_acc": final["val/acc"],
    }
    summary["mfu"] = summary["tokens_per_s"] * flops_per_token / peak
    _emit(sinks, {**final, "final/val_loss": final["val/loss"], "final/val_ppl": final["val/ppl"],
                  "final/val_acc": final["val/acc"], "final/tokens": spent.tokens,
                  "final/tokens_per_param": spent.tokens / n_params}, spent.step)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(format_summary(summary), flush=True)
    return summary


def format_summary(s: dict[str, Any]) -> str:
    t = s["time_s"]
    return "\n".join([
        "=" * 60,
        f"model      {s['model']} ({s['arch']}), {s['params']:,} params "
        f"({s['non_embedding_params']:,} non-embedding)",
        f"tokens     {s['tokens']:,} in {s['steps']:,} steps, {s['tokens_per_param']:.3f} tokens/param"
        f" ({s['binding_budget']} budget bound)",
        f"speed      {s['tokens_per_s']:,.0f} tokens/s, MFU {100 * s['mfu']:.1f}% on {s['device']}",
        f"wall time  compile {t['compile']:.1f}s | train {t['train']:.1f}s | eval {t['eval']:.1f}s",
        f"final val  loss {s['val_loss']:.4f} | ppl {s['val_ppl']:.2f} | acc {s['val_acc']:.4f}",
        "=" * 60,
    ])
