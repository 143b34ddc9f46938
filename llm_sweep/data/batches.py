"""Training and evaluation batches cut from a token shard.

A training batch is a pure function of (seed, step, micro): resuming at a step reproduces
exactly the batches an uninterrupted run would have seen, with no sampler state to
checkpoint, and over several processes each one cuts its share (`BatchShare`) of the same
global batch (core.world.BatchShare).
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Optional

import numpy as np
import torch

from llm_sweep.core.errors import DataError
from llm_sweep.data.shards import TokenShard, eval_batch_count

Batch = tuple[torch.Tensor, torch.Tensor]


class BatchSampler:
    """Random windows of `seq_len + 1` tokens: inputs and next-token targets. `rows` cuts one
    process's share of every micro-batch (all of it by default): the windows of a micro-batch
    are drawn whole, so its rows do not depend on how they are split."""

    def __init__(self, shard: TokenShard, micro_batch_size: int, seq_len: int, seed: int,
                 rows: slice = slice(None), device: str | torch.device = "cpu"):
        _require_windows(shard, seq_len)
        self.shard = shard
        self.micro_batch_size = micro_batch_size
        self.seq_len = seq_len
        self.seed = seed
        self.rows = rows
        self.device = torch.device(device)
        self._window = np.arange(seq_len + 1)

    def get(self, step: int, micro: int) -> Batch:
        """`(x, y)`, each `(rows, seq_len)` int64 on the device; y is x shifted by one."""
        # The 0 stands where a per-process stream once was: the batches stay those of every
        # earlier run of this seed (a resumed run continues on the same data).
        rng = np.random.default_rng([self.seed, 0, step, micro])
        starts = rng.integers(0, len(self.shard) - self.seq_len, size=self.micro_batch_size)
        return _to_device(self.shard.tokens[starts[self.rows, None] + self._window], self.device)


class StepPrefetcher:
    """A step's micro-batches, `sampler.get(step, micro)` for micro in `micro_batches` (this
    process's share of the step's global micro-batch indices, all of them for one process),
    prepared on a background thread while the step before computes: the host-side sampling
    (random reads of the shard, then pinned memory and an asynchronous copy on CUDA) stays
    out of the step's critical path.

    `batches(step)` returns the step's batches and starts preparing step + 1. Any order of
    requests is served (a run resumes at any step): a step other than the one prepared is
    sampled on the spot. The batches are the sampler's own, so they stay a pure function of
    (seed, rank, step, micro).
    """

    def __init__(self, sampler: BatchSampler, micro_batches: Sequence[int]):
        self.sampler = sampler
        self.micro_batches = list(micro_batches)
        on_gpu = {}
        if sampler.device.type == "cuda":  # the worker's "cuda" is the caller's current GPU
            index = sampler.device.index
            on_gpu = {"initializer": torch.cuda.set_device,
                      "initargs": (torch.cuda.current_device() if index is None else index,)}
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="step-prefetch", **on_gpu)
        self._next: Optional[tuple[int, Future[list[Batch]]]] = None

    def _sample(self, step: int) -> list[Batch]:
        return [self.sampler.get(step, micro) for micro in self.micro_batches]

    def batches(self, step: int) -> list[Batch]:
        prepared, self._next = self._next, None
        if prepared is not None and prepared[0] == step:
            ready = prepared[1].result()
        else:
            ready = self._sample(step)
        # On CUDA the worker's copies go to the default stream, as the training step's
        # kernels do, so they are ordered before any use of the batches.
        self._next = (step + 1, self._worker.submit(self._sample, step + 1))
        return ready

    def close(self) -> None:
        self._worker.shutdown(wait=True, cancel_futures=True)
        self._next = None

    def __enter__(self) -> "StepPrefetcher":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def iter_eval_batches(shard: TokenShard, micro_batch_size: int, seq_len: int,
                      max_batches: int | None = None, device: str | torch.device = "cpu",
                      rank: int = 0, world_size: int = 1) -> Iterator[Batch]:
    """Contiguous windows from the start of the split, the same on every call.

    Window i covers tokens [i * seq_len, (i + 1) * seq_len], so every token after the
    first is predicted exactly once. Windows are grouped into full batches and a
    trailing partial batch is dropped, unless the split is too short for one full
    batch: then that partial batch is the whole evaluation. Over several processes,
    process `rank` gets every `world_size`-th of the (first `max_batches`) batches.
    """
    groups = _eval_groups(shard, micro_batch_size, seq_len)
    window = np.arange(seq_len + 1)
    device = torch.device(device)
    return (_to_device(shard.tokens[group[:, None] + window], device)
            for group in groups[:max_batches][rank::world_size])


def _eval_groups(shard: TokenShard, micro_batch_size: int, seq_len: int) -> list[np.ndarray]:
    """The start offsets of each evaluation batch's windows."""
    _require_windows(shard, seq_len)
    starts = np.arange((len(shard) - 1) // seq_len) * seq_len
    count = eval_batch_count(len(shard), micro_batch_size, seq_len)
    return [starts[i * micro_batch_size:(i + 1) * micro_batch_size] for i in range(count)]


def _require_windows(shard: TokenShard, seq_len: int) -> None:
    if seq_len + 1 > len(shard):
        raise DataError(f"batch.seq_len={seq_len} needs windows of {seq_len + 1} tokens but the "
                        f"{shard.path.stem} split ({shard.path}) has only {len(shard):,} tokens; "
                        "lower batch.seq_len or give the split more data (data.val_fraction)")


def _to_device(windows: np.ndarray, device: torch.device) -> Batch:
    """Inputs and targets from (B, T + 1) windows, as one host buffer and one copy."""
    batch, width = windows.shape
    # For CUDA the buffer is pinned: the copy is then asynchronous (non_blocking).
    tensor = torch.empty((2, batch, width - 1), dtype=torch.int64, pin_memory=device.type == "cuda")
    pair = tensor.numpy()
    pair[0] = windows[:, :-1]
    pair[1] = windows[:, 1:]
    if device.type != "cpu":
        tensor = tensor.to(device, non_blocking=device.type == "cuda")
    return tensor[0], tensor[1]
