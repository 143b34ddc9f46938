"""The `data` config group."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

from llm_sweep.core.rules import rule

DATASETS = ("shakespeare", "english", "slimpajama", "text")
# The token ids each tokenizer emits (GPT-2 BPE: 0..50256; bytes: 0..255 and end-of-text
# 256), so model.vocab_size is set and checked without loading a tokenizer.
TOKENIZER_VOCAB_SIZES = {"gpt2": 50257, "bytes": 257}
TOKENIZERS = tuple(TOKENIZER_VOCAB_SIZES)


def _inputs_named(d: "DataConfig", p: str) -> Optional[str]:
    if d.name == "text" and not d.paths:
        return f"{p}name=text needs {p}paths=[file.txt,folder/,...]: the .txt/.md/.jsonl files to read"
    if d.name == "slimpajama" and not d.source:
        return f"{p}name=slimpajama needs {p}source: a hub id or a local JSONL/Parquet path"
    return None


@dataclass
class DataConfig:
    name: str = field(default="shakespeare", metadata=rule(choices=DATASETS))
    # gpt2: GPT-2's BPE; bytes: UTF-8 bytes, for CPU-scale studies where a 50k-token
    # embedding would be most of the model
    tokenizer: str = field(default="gpt2", metadata=rule(choices=TOKENIZERS))
    source: Optional[str] = None  # slimpajama: a hub id or a local dir/file of JSONL/Parquet
    paths: List[str] = field(default_factory=list)  # text: files or folders
    cache_dir: Optional[str] = None  # None: $LLM_SWEEP_CACHE or ~/.cache/llm_sweep
    # Training needs both splits.
    val_fraction: float = field(default=0.0005, metadata=rule(gt=0, lt=1))
    split_seed: int = field(default=2357, metadata=rule(ge=0, lt=2**32))
    num_proc: int = field(default=8, metadata=rule(ge=1))

    cross_field_rules = (_inputs_named,)  # not a field: no annotation

    @property
    def vocab_size(self) -> int:
        """The number of token ids the tokenizer emits."""
        return TOKENIZER_VOCAB_SIZES[self.tokenizer]
