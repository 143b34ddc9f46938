"""A model's size and cost from its config alone: no weights are built.

Every count of parameters and of training FLOPs in llm_sweep (the training summary,
MFU, tracking params, the bench, plan and report) comes from these two functions.
"""
from __future__ import annotations

from llm_sweep.core.model_config import ModelConfig, with_vocab_size


def param_count(config: ModelConfig, non_embedding: bool = False) -> int:
    """Parameters, tied weights once. non_embedding leaves out the token embedding, the
    position table and an untied LM head."""
    C, H, L = config.n_embd, config.mlp_hidden, config.n_layer
    mlp_matrices = 3 if config.arch == "llama" else 2  # SwiGLU: gate, up, down
    per_layer = 4 * C * C + mlp_matrices * H * C + 2 * C  # qkv, out_proj, MLP, two norms
    body = L * per_layer + C  # + the final norm
    if non_embedding:
        return body
    return body + embedding_count(config) + position_count(config)


def embedding_count(config: ModelConfig) -> int:
    """The token embedding, and the LM head when it is not tied to it (an unset vocab_size
    counts as the default tokenizer's, as build_model reads it)."""
    tables = 1 if config.weight_tying else 2
    return tables * with_vocab_size(config).vocab_size * config.n_embd


def position_count(config: ModelConfig) -> int:
    """GPT-2's learned position table (Llama's rotary tables are not parameters)."""
    return config.max_seq_len * config.n_embd if config.arch == "gpt2" else 0


def flops_per_token(config: ModelConfig, seq_len: int) -> int:
    """Training FLOPs per token (forward and backward): 6 N, with N every parameter but
    the position table, which is only looked up (the token embedding stays in: tied, it
    is the LM head), plus 12 * n_layer * n_embd * seq_len for the attention scores and
    their weighted sum of values."""
    n_matmul = param_count(config) - position_count(config)
    return 6 * n_matmul + 12 * config.n_layer * config.n_embd * seq_len
