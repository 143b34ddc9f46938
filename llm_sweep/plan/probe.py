"""Tokens/s of each model preset on this machine, from a few real training steps.

The bench's own runner measures them (random tokens, AdamW, the training loop's step
functions), eager (no torch.compile: its warm-up would cost more than the probe), so the
rate is a lower bound for a compiled run.
"""
from __future__ import annotations

import logging

import torch

from llm_sweep.bench.modes import BenchMode
from llm_sweep.bench.runner import measure_mode, synthetic_shard
from llm_sweep.core.config import BatchConfig, BenchConfig, RunConfig
from llm_sweep.core.model_config import ModelConfig

log = logging.getLogger(__name__)
WARMUP_STEPS = 1  # allocator growth, kernel selection, optimizer state creation


def probe_tokens_per_s(config: ModelConfig, device: torch.device, dtype: str, batch_size: int,
                       seq_len: int, steps: int, seed: int = 0) -> float:
    """Training tokens per second over `steps` timed optimizer steps of one micro-batch."""
    run = RunConfig(model=config, batch=BatchConfig(batch_size, 1, seq_len),
                    bench=BenchConfig(warmup_steps=WARMUP_STEPS, steps=steps), seed=seed)
    with synthetic_shard(config.vocab_size, seed) as shard:
        record = measure_mode(BenchMode(compile=False, dtype=dtype), run, device, shard, peak=None)
    return record.tokens_per_s


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
        log.info("probed %s: %s", config.name, result)
    return rates, skipped
