"""The `model` config group: one dataclass shared by both architectures."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

ARCHS = ("gpt2", "llama")


@dataclass
class ModelConfig:
    name: str = "custom"  # preset name, shown in run names and reports
    arch: str = "llama"  # gpt2 | llama
    n_layer: int = 2
    n_head: Optional[int] = None  # None: derived as n_embd // head_dim
    n_embd: int = 256
    head_dim: int = 64
    vocab_size: int = 50304  # GPT-2's 50257 padded to a multiple of 64
    max_seq_len: int = 1024
    dropout: float = 0.0
    weight_tying: bool = True
    multiple_of: int = 256  # SwiGLU hidden size is rounded up to this
    rmsnorm_eps: float = 1e-5

    @property
    def heads(self) -> int:
        """The number of attention heads, derived from head_dim when n_head is unset."""
        return self.n_head if self.n_head is not None else self.n_embd // self.head_dim

    @property
    def mlp_hidden(self) -> int:
        """MLP width: 4 x n_embd for GPT-2. SwiGLU has three matrices instead of two, so
        it keeps the parameter count with 2/3 of that width, rounded up to multiple_of."""
        if self.arch == "gpt2":
            return 4 * self.n_embd
        hidden = int(2 * 4 * self.n_embd / 3)
        return -(-hidden // self.multiple_of) * self.multiple_of
