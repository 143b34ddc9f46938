"""The `data` config group."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

DATASETS = ("shakespeare", "slimpajama", "text")


@dataclass
class DataConfig:
    name: str = "shakespeare"  # shakespeare | slimpajama | text
    source: Optional[str] = None  # slimpajama: a hub id or a local dir/file of JSONL/Parquet
    paths: List[str] = field(default_factory=list)  # text: files or folders
    cache_dir: Optional[str] = None  # None: $LLM_SWEEP_CACHE or ~/.cache/llm_sweep
    val_fraction: float = 0.0005
    split_seed: int = 2357
    num_proc: int = 8
