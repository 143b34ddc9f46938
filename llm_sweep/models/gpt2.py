"""The GPT-2 baseline: learned positions, LayerNorm (no bias), GELU MLP, no biases.

state_dict keys (the checkpoint format; `lm_head.weight` is the same tensor as
`tok_emb.weight` when weight_tying is on):
    tok_emb.weight                (vocab_size, n_embd)
    pos_emb.weight                (max_seq_len, n_embd)
    blocks.{i}.attn_norm.weight   (n_embd,)
    blocks.{i}.attn.qkv.weight    (3 n_embd, n_embd)   rows: q, k, v; heads contiguous
    blocks.{i}.attn.out_proj.weight (n_embd, n_embd)
    blocks.{i}.mlp_norm.weight    (n_embd,)
    blocks.{i}.mlp.fc.weight      (4 n_embd, n_embd)
    blocks.{i}.mlp.out_proj.weight (n_embd, 4 n_embd)
    norm.weight                   (n_embd,)
    lm_head.weight                (vocab_size, n_embd)
"""
from __future__ import annotations

from torch import Tensor, nn

from llm_sweep.core.model_config import ModelConfig
from llm_sweep.models.layers import Block, CausalLM, CausalSelfAttention, GeluMLP
from llm_sweep.models.parametrization import attention_scale, residual_multiplier


class GPT2(CausalLM):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        C = config.n_embd
        self.tok_emb = nn.Embedding(config.vocab_size, C)
        self.pos_emb = nn.Embedding(config.max_seq_len, C)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            Block(nn.LayerNorm(C, bias=False),
                  CausalSelfAttention(C, config.heads, config.dropout, attention_scale(config)),
                  nn.LayerNorm(C, bias=False),
                  GeluMLP(C, config.mlp_hidden, config.dropout),
                  residual_multiplier(config))
            for _ in range(config.n_layer))
        self.norm = nn.LayerNorm(C, bias=False)
        self.lm_head = nn.Linear(C, config.vocab_size, bias=False)
        if config.weight_tying:
            self.tie_weights()
        self.init_weights()

    def position_table(self) -> nn.Parameter:
        return self.pos_emb.weight

    def features(self, idx: Tensor) -> Tensor:
        T = idx.size(1)
        # Slicing the table avoids an index gather of positions 0..T-1.
        x = self.drop(self.tok_emb(idx) + self.pos_emb.weight[:T])  # (B, T, C)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)
