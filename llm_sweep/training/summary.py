"""The end of a run: the summary (summary.json), its final metrics, and the printed block."""
from __future__ import annotations

import time
from typing import Any, Optional

from llm_sweep.core.run_record import (FINAL_FLOPS, FINAL_TOKENS, FINAL_TOKENS_PER_PARAM,
                                       FINAL_VAL_ACC, FINAL_VAL_LOSS, FINAL_VAL_PPL, VAL_ACC,
                                       VAL_LOSS, VAL_PPL)
from llm_sweep.training.metrics import mfu, tokens_per_s
from llm_sweep.training.setup import TrainingParts


def build_summary(parts: TrainingParts, final: dict[str, float]) -> dict[str, Any]:
    """What the run did and reached, from its parts and the final evaluation."""
    spent, info = parts.spent, parts.info()
    timed_tokens = (spent.step - spent.compile_steps) * parts.tokens_per_step
    rate = tokens_per_s(timed_tokens, spent.train_s) if spent.train_s > 0 else 0.0
    return {
        "model": parts.run.model.name, "arch": parts.run.model.arch, "params": info.params,
        "non_embedding_params": info.non_embedding_params,
        "flops_per_token": info.flops_per_token, "tokens_per_step": info.tokens_per_step,
        "steps": spent.step, "tokens": spent.tokens, "tokens_per_param": spent.tokens / info.params,
        "flops": spent.tokens * info.flops_per_token,
        "tokens_per_s": rate, "mfu": mfu(rate, info.flops_per_token, info.peak_flops),
        "binding_budget": parts.budget.binding(spent), "device": info.device,
        "time_s": {"compile": spent.compile_s, "train": spent.train_s, "eval": spent.eval_s},
        "ended_at": time.time(),  # Unix time: with time_s, when the run trained (runs packed on one GPU overlap)
        "val_loss": final[VAL_LOSS], "val_ppl": final[VAL_PPL], "val_acc": final[VAL_ACC],
    }


def final_metrics(summary: dict[str, Any], final: dict[str, float]) -> dict[str, float]:
    """The last evaluation under its own names and as the run's final/* metrics."""
    return {**final, FINAL_VAL_LOSS: summary["val_loss"], FINAL_VAL_PPL: summary["val_ppl"],
            FINAL_VAL_ACC: summary["val_acc"], FINAL_TOKENS: summary["tokens"],
            FINAL_TOKENS_PER_PARAM: summary["tokens_per_param"], FINAL_FLOPS: summary["flops"]}


def _percent(value: Optional[float]) -> str:
    return "n/a (unknown peak)" if value is None else f"{100 * value:.1f}%"


def format_summary(s: dict[str, Any]) -> str:
    t = s["time_s"]
    return "\n".join([
        "=" * 60,
        f"model      {s['model']} ({s['arch']}), {s['params']:,} params "
        f"({s['non_embedding_params']:,} non-embedding)",
        f"tokens     {s['tokens']:,} in {s['steps']:,} steps, {s['tokens_per_param']:.3f} tokens/param"
        f", {s['flops']:.3g} FLOPs ({s['binding_budget']} budget bound)",
        f"speed      {s['tokens_per_s']:,.0f} tokens/s, MFU {_percent(s['mfu'])} on {s['device']}",
        f"wall time  compile {t['compile']:.1f}s | train {t['train']:.1f}s | eval {t['eval']:.1f}s",
        f"final val  loss {s['val_loss']:.4f} | ppl {s['val_ppl']:.2f} | acc {s['val_acc']:.4f}",
        "=" * 60,
    ])
