"""Building blocks shared by both architectures, and the language-model base class.

No Linear has a bias. Residual output projections are named `out_proj` in attention and
in both MLPs: that name is what `CausalLM.init_weights` scales down, and what the
Hugging Face export maps.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llm_sweep.models.config import ModelConfig

INIT_STD = 0.02
Rope = tuple[Tensor, Tensor]  # (cos, sin), each (T, head_size / 2), fp32


class RMSNorm(nn.Module):
    """Root-mean-square norm, computed in fp32 and cast back to the input dtype, so a
    bf16 activation is normalized as precisely as an fp32 one."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return (normed * self.weight.float()).to(x.dtype)


def rotary_tables(max_seq_len: int, head_size: int, theta: float = 10000.0) -> Rope:
    """cos and sin of the angle position * theta^(-2i / head_size), each (max_seq_len, head_size / 2)."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_size, 2, dtype=torch.float32) / head_size)
    angles = torch.outer(torch.arange(max_seq_len, dtype=torch.float32), inv_freq)
    return angles.cos(), angles.sin()


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate x (..., T, head_size) with the "rotate-half" pairing: dimension i is paired
    with i + head_size / 2 (Hugging Face Llama's convention, so export copies q and k
    unchanged). Real arithmetic only, in fp32, so it compiles into one fused kernel."""
    x1, x2 = x.float().chunk(2, dim=-1)
    rotated = torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)
    return rotated.type_as(x)


class CausalSelfAttention(nn.Module):
    """Multi-head causal attention: one fused qkv projection, then SDPA (flash on CUDA)."""

    def __init__(self, n_embd: int, n_head: int, dropout: float) -> None:
        super().__init__()
        self.n_head = n_head
        self.dropout = dropout
        self.qkv = nn.Linear(n_embd, 3 * n_embd, bias=False)
        self.out_proj = nn.Linear(n_embd, n_embd, bias=False)
        self.resid_drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, rope: Optional[Rope] = None) -> Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_head, C // self.n_head).unbind(dim=2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        if rope is not None:
            q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True)
        y = y.transpose(1, 2).reshape(B, T, C)
        return self.resid_drop(self.out_proj(y))


class GeluMLP(nn.Module):
    """GPT-2's MLP: Linear, GELU (tanh approximation, as in GPT-2), Linear."""

    def __init__(self, n_embd: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.fc = nn.Linear(n_embd, hidden, bias=False)
        self.out_proj = nn.Linear(hidden, n_embd, bias=False)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.out_proj(F.gelu(self.fc(x), approximate="tanh")))


class SwiGLU(nn.Module):
    """silu(gate) * up, then down. Gate and up share one Linear (`gate_up`, gate rows
    first) so the input is read once."""

    def __init__(self, n_embd: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.gate_up = nn.Linear(n_embd, 2 * hidden, bias=False)
        self.out_proj = nn.Linear(hidden, n_embd, bias=False)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.drop(self.out_proj(F.silu(gate) * up))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, attn_norm: nn.Module, attn: CausalSelfAttention,
                 mlp_norm: nn.Module, mlp: nn.Module) -> None:
        super().__init__()
        self.attn_norm, self.attn = attn_norm, attn
        self.mlp_norm, self.mlp = mlp_norm, mlp

    def forward(self, x: Tensor, rope: Optional[Rope] = None) -> Tensor:
        x = x + self.attn(self.attn_norm(x), rope)
        return x + self.mlp(self.mlp_norm(x))


class CausalLM(nn.Module):
    """What both architectures share: the LM head and loss, sampling, parameter and
    FLOP counts, and GPT-2 initialization. A subclass defines `tok_emb`, `blocks`,
    `norm`, `lm_head` and `features(idx)`, the final normalized hidden states."""

    tok_emb: nn.Embedding
    lm_head: nn.Linear

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config

    def features(self, idx: Tensor) -> Tensor:
        raise NotImplementedError

    def position_table(self) -> Optional[nn.Parameter]:
        """The learned position-embedding table, if the architecture has one."""
        return None

    def forward(self, idx: Tensor, targets: Optional[Tensor] = None) -> Tensor | tuple[Tensor, Tensor]:
        if idx.size(1) > self.config.max_seq_len:
            raise ValueError(f"sequence length {idx.size(1)} exceeds max_seq_len={self.config.max_seq_len}")
        logits = self.lm_head(self.features(idx))  # (B, T, V)
        if targets is None:
            return logits
        loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())
        return logits, loss

    def init_weights(self) -> None:
        """GPT-2 init: N(0, 0.02) for Linear and Embedding weights; residual output
        projections N(0, 0.02 / sqrt(2 n_layer)) so the residual stream's variance
        does not grow with depth. Norm weights keep their ones."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=INIT_STD)
        residual_std = INIT_STD / math.sqrt(2 * self.config.n_layer)
        for name, param in self.named_parameters():
            if name.endswith("out_proj.weight"):
                nn.init.normal_(param, mean=0.0, std=residual_std)

    def tie_weights(self) -> None:
        self.lm_head.weight = self.tok_emb.weight

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameters, tied weights once. non_embedding leaves out the token embedding,
        the position table and an untied LM head."""
        params = {id(p): p.numel() for p in self.parameters()}
        if non_embedding:
            tables = [self.tok_emb.weight, self.lm_head.weight, self.position_table()]
            for table in tables:
                if table is not None:
                    params.pop(id(table), None)
        return sum(params.values())

    def flops_per_token(self, seq_len: int) -> int:
        """Training FLOPs per token (forward and backward): 6 N, with N every parameter
        but the position table, which is only looked up (the token embedding stays in:
        tied, it is the LM head), plus 12 * n_layer * n_embd * seq_len for attention
        scores and their weighted sum of values."""
        position = self.position_table()
        n_matmul = self.num_params() - (position.numel() if position is not None else 0)
        return 6 * n_matmul + 12 * self.config.n_layer * self.config.n_embd * seq_len

    @torch.no_grad()
    def generate(self, idx: Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: Optional[int] = None) -> Tensor:
        """Append max_new_tokens sampled tokens to idx (B, T); the context is cropped to
        the last max_seq_len tokens. Call model.eval() first to disable dropout."""
        for _ in range(max_new_tokens):
            context = idx[:, -self.config.max_seq_len:]
            logits = self.lm_head(self.features(context)[:, -1]).float() / temperature
            if top_k is not None:
                kth_largest = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1:]
                logits = logits.masked_fill(logits < kth_largest, float("-inf"))
            next_token = torch.multinomial(F.softmax(logits, dim=-1), num_samples=1)
            idx = torch.cat((idx, next_token), dim=1)
        return idx
