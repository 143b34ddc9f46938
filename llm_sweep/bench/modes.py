"""Benchmark modes: eager or torch.compile, in fp32 or under bf16 autocast."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from llm_sweep.core.config import BENCH_MODES

MODES = BENCH_MODES  # what bench.modes allows


@dataclass(frozen=True)
class BenchMode:
    compile: bool
    dtype: str  # fp32 | bf16

    @property
    def name(self) -> str:
        return f"{'compile' if self.compile else 'eager'}-{self.dtype}"


def parse_modes(names: Sequence[str]) -> list[BenchMode]:
    """The modes named in bench.modes (checked by its rule in llm_sweep.core.config), in order."""
    return [BenchMode(compile=name.startswith("compile"), dtype=name.split("-")[1]) for name in names]
