"""The Llama-style ("noam") model: rotary positions, RMSNorm, SwiGLU MLP, no biases.

Rotary embeddings pair dimension i with i + head_size / 2 ("rotate-half", as Hugging Face
Llama does). The cos/sin tables are non-persistent fp32 buffers built once, so neither
the forward pass nor the checkpoint carries them. Train in bf16 through autocast:
`model.to(torch.bfloat16)` would round these tables too.

state_dict keys (the checkpoint format; `lm_head.weight` is the same tensor as
`tok_emb.weight` when weight_tying is on, the default):
    tok_emb.weight                  (vocab_size, n_embd)
    blocks.{i}.attn_norm.weight     (n_embd,)
    blocks.{i}.attn.qkv.weight      (3 n_embd, n_embd)   rows: q, k, v; heads contiguous
    blocks.{i}.attn.out_proj.weight (n_embd, n_embd)
    blocks.{i}.mlp_norm.weight      (n_embd,)
    blocks.{i}.mlp.gate_up.weight   (2 hidden, n_embd)   rows: gate, up
    blocks.{i}.mlp.out_proj.weight  (n_embd, hidden)
    norm.weight                     (n_embd,)
    lm_head.weight                  (vocab_size, n_embd)
with hidden = config.mlp_hidden.
"""
from __future__ import annotations

from torch import Tensor, nn

from llm_sweep.core.model_config import ModelConfig
from llm_sweep.models.layers import (Block, CausalLM, CausalSelfAttention, RMSNorm, SwiGLU,
                                     rotary_tables)
from llm_sweep.models.parametrization import attention_scale, residual_multiplier

ROPE_THETA = 10000.0


class Llama(CausalLM):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        C, eps = config.n_embd, config.rmsnorm_eps
        self.tok_emb = nn.Embedding(config.vocab_size, C)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            Block(RMSNorm(C, eps),
                  CausalSelfAttention(C, config.heads, config.dropout, attention_scale(config)),
                  RMSNorm(C, eps),
                  SwiGLU(C, config.mlp_hidden, config.dropout),
                  residual_multiplier(config))
            for _ in range(config.n_layer))
        self.norm = RMSNorm(C, eps)
        self.lm_head = nn.Linear(C, config.vocab_size, bias=False)
        cos, sin = rotary_tables(config.max_seq_len, C // config.heads, ROPE_THETA)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        if config.weight_tying:
            self.tie_weights()
        self.init_weights()

    def features(self, idx: Tensor) -> Tensor:
        T = idx.size(1)
        rope = (self.rope_cos[:T], self.rope_sin[:T])
        x = self.drop(self.tok_emb(idx))  # (B, T, C)
        for block in self.blocks:
            x = block(x, rope)
        return self.norm(x)
