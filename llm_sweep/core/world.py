"""The processes that train one run: this process's place among them, read once from the
environment torchrun (or a submitit job of several tasks) sets, and its share of every
step's global batch. Joining the process group is training.distributed's; this module
needs no torch, so the entry points can ask "am I rank 0?" before anything loads.
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Optional

from llm_sweep.core.errors import ConfigError


@dataclass(frozen=True)
class World:
    """This process's place among the processes that train one run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    joined: bool = False  # in a process group (torchrun starts one even for a single process)

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None) -> "World":
        """The place torchrun's (or submitit's exported) RANK, WORLD_SIZE and LOCAL_RANK give,
        before any process group exists: the one reader of those variables (read when called:
        submitit exports them after this module is imported)."""
        environ = os.environ if environ is None else environ
        return cls(int(environ.get("RANK", "0")), int(environ.get("WORLD_SIZE", "1")),
                   int(environ.get("LOCAL_RANK", "0")))

    @staticmethod
    def launched_as_group(environ: Optional[Mapping[str, str]] = None) -> bool:
        """Started as one of a group of processes (torchrun, or submitit's exported tasks)."""
        return "WORLD_SIZE" in (os.environ if environ is None else environ)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Training goes through DDP and the processes agree on every decision."""
        return self.joined

    def share(self, micro_batch_size: int, grad_accum: int) -> "BatchShare":
        """This rank's part of every step's global batch: whole micro-batches where the
        accumulation steps divide over the ranks, else rows of them too (see BatchShare);
        refused with one line when the rows cannot be split evenly either."""
        return BatchShare.of(micro_batch_size, grad_accum, self.rank, self.world_size)


@dataclass(frozen=True)
class BatchShare:
    """The part of every optimizer step's global batch (`grad_accum` micro-batches of
    `micro_batch_size` rows) that one of `world_size` processes runs.

    The processes form `gcd(grad_accum, world_size)` groups; each group runs an equal run of
    consecutive micro-batches, and the `row_splits` processes of a group split the rows of
    each of them. With DDP averaging the gradients, the step's gradient is exactly the one
    process's: the mean over the same sequences, whatever the world size.
    """

    micro_batches: range  # the global micro-batch indices this process runs
    rows: slice  # the rows of each of them it runs
    row_splits: int = 1  # processes sharing one micro-batch's rows
    world_size: int = 1

    @classmethod
    def of(cls, micro_batch_size: int, grad_accum: int, rank: int = 0, world_size: int = 1) -> "BatchShare":
        groups = math.gcd(grad_accum, world_size)
        splits = world_size // groups
        if micro_batch_size % splits:
            raise ConfigError(
                f"batch.micro_batch_size={micro_batch_size} x batch.grad_accum={grad_accum} does not "
                f"split evenly over {world_size} processes: each micro-batch's rows would be split "
                f"{splits} ways; use a batch.micro_batch_size divisible by {splits}, or a "
                f"batch.grad_accum that is a multiple of {world_size}")
        per_group, rows = grad_accum // groups, micro_batch_size // splits
        group, part = divmod(rank, splits)
        return cls(range(group * per_group, (group + 1) * per_group),
                   slice(part * rows, (part + 1) * rows), splits, world_size)

    def last_micro_batch(self, grad_accum: int) -> tuple[int, float]:
        """Where this process's last micro-batch sits in the step's last global micro-batch:
        its first row there, and the weight that makes the mean of all processes' gradients
        on it that micro-batch's gradient (0 for a process that does not hold it)."""
        holds = grad_accum - 1 in self.micro_batches
        return self.rows.start, self.world_size / self.row_splits if holds else 0.0
