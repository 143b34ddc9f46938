"""Tokens/s of a model on this machine, from a few real training steps on random tokens.

The steps are the training loop's own (forward_backward, optimizer_step) with AdamW,
eager (no torch.compile: its warm-up would cost more than the probe), so the rate is
a lower bound for a compiled run.
"""
from __future__ import annotations

import sys
import time

import torch

from llm_sweep.hardware import autocast_for
from llm_sweep.models import ModelConfig, build_model
from llm_sweep.optim import build_optimizer
from llm_sweep.optim.config import OptimConfig
from llm_sweep.train import forward_backward, optimizer_step

WARMUP_STEPS = 1  # allocator growth, kernel selection, optimizer state creation


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def probe_tokens_per_s(config: ModelConfig, device: torch.device, dtype: str, batch_size: int,
                       seq_len: int, steps: int, seed: int = 0) -> float:
    """Training tokens per second over `steps` timed optimizer steps of one micro-batch."""
    torch.manual_seed(seed)
    model = build_model(config).to(device)
    optim = OptimConfig()
    optimizer, hook = build_optimizer(model, optim, batch_size * seq_len, device.type)
    autocast = autocast_for(device, dtype)
    tokens = torch.randint(config.vocab_size, (batch_size, seq_len + 1), device=device)
    batches = [(tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous())]
    model.train()
    for step in range(WARMUP_STEPS + steps):
        if step == WARMUP_STEPS:
            _sync(device)
            start = time.perf_counter()
        forward_backward(model, batches, autocast)
        optimizer_step(model, optimizer, hook, optim.grad_clip)
    _sync(device)
    return steps * batch_size * seq_len / (time.perf_counter() - start)


def probe_presets(configs: list[ModelConfig], device: torch.device, dtype: str, batch_size: int,
                  seq_len: int, steps: int) -> tuple[dict[str, float], dict[str, str]]:
    """Tokens/s per preset, and why a preset has none (too long a sequence, out of memory)."""
    rates, skipped = {}, {}
    for config in configs:
        if seq_len > config.max_seq_len:
            skipped[config.name] = f"not probed: seq_len {seq_len} > max_seq_len {config.max_seq_len}"
            continue
        try:
            rates[config.name] = probe_tokens_per_s(config, device, dtype, batch_size, seq_len, steps)
        except torch.cuda.OutOfMemoryError:
            skipped[config.name] = f"out of memory at batch size {batch_size}"
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()
        result = f"{rates[config.name]:,.0f} tokens/s" if config.name in rates else skipped[config.name]
        print(f"probed {config.name}: {result}", file=sys.stderr, flush=True)
    return rates, skipped
