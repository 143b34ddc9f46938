"""Benchmark modes: eager or torch.compile, in fp32 or under bf16 autocast."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from llm_sweep.errors import ConfigError

MODES = ("eager-fp32", "eager-bf16", "compile-fp32", "compile-bf16")


@dataclass(frozen=True)
class BenchMode:
    compile: bool
    dtype: str  # fp32 | bf16

    @property
    def name(self) -> str:
        return f"{'compile' if self.compile else 'eager'}-{self.dtype}"


def parse_modes(names: Sequence[str]) -> list[BenchMode]:
    """The modes named in bench.modes, in order; an unknown or missing one is a ConfigError."""
    unknown = [name for name in names if name not in MODES]
    if unknown or not names:
        shown = ", ".join(map(str, unknown)) or "an empty list"
        raise ConfigError(f"bench.modes: {shown} is not allowed; use any of {', '.join(MODES)}")
    return [BenchMode(compile=name.startswith("compile"), dtype=name.split("-")[1]) for name in names]
