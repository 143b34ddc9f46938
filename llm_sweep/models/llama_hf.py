"""The Llama-style model as a Hugging Face `LlamaForCausalLM`.

Our RoPE already uses Hugging Face's rotate-half pairing, so q and k rows are copied
unpermuted; the fused qkv and gate_up projections are split into their parts.
"""
from __future__ import annotations

from typing import Any

from torch import Tensor

from llm_sweep.core.model_config import ModelConfig
from llm_sweep.models.llama import ROPE_THETA

GPT2_END_OF_TEXT = 50256  # the GPT-2 tokenizer's <|endoftext|>


def token_ids(config: ModelConfig) -> dict[str, Any]:
    """bos/eos: GPT-2's end-of-text when the vocabulary holds it."""
    eot = GPT2_END_OF_TEXT if config.vocab_size > GPT2_END_OF_TEXT else None
    return {"bos_token_id": eot, "eos_token_id": eot}


def hf_config(transformers: Any, config: ModelConfig) -> Any:
    return transformers.LlamaConfig(
        vocab_size=config.vocab_size, hidden_size=config.n_embd,
        intermediate_size=config.mlp_hidden, num_hidden_layers=config.n_layer,
        num_attention_heads=config.heads, num_key_value_heads=config.heads,
        head_dim=config.n_embd // config.heads, hidden_act="silu",
        max_position_embeddings=config.max_seq_len, rms_norm_eps=config.rmsnorm_eps,
        rope_theta=ROPE_THETA, attention_bias=False, mlp_bias=False,
        tie_word_embeddings=config.weight_tying, **token_ids(config))


def hf_state(state: dict[str, Tensor], config: ModelConfig) -> dict[str, Tensor]:
    """Our state_dict under LlamaForCausalLM's keys."""
    hf = {"model.embed_tokens.weight": state["tok_emb.weight"],
          "model.norm.weight": state["norm.weight"],
          "lm_head.weight": state["lm_head.weight"]}
    for i in range(config.n_layer):
        ours, theirs = f"blocks.{i}.", f"model.layers.{i}."
        q, k, v = state[ours + "attn.qkv.weight"].chunk(3, dim=0)
        gate, up = state[ours + "mlp.gate_up.weight"].chunk(2, dim=0)
        hf.update({
            theirs + "input_layernorm.weight": state[ours + "attn_norm.weight"],
            theirs + "self_attn.q_proj.weight": q,
            theirs + "self_attn.k_proj.weight": k,
            theirs + "self_attn.v_proj.weight": v,
            theirs + "self_attn.o_proj.weight": state[ours + "attn.out_proj.weight"],
            theirs + "post_attention_layernorm.weight": state[ours + "mlp_norm.weight"],
            theirs + "mlp.gate_proj.weight": gate,
            theirs + "mlp.up_proj.weight": up,
            theirs + "mlp.down_proj.weight": state[ours + "mlp.out_proj.weight"],
        })
    return {key: value.contiguous() for key, value in hf.items()}


def to_hf(transformers: Any, config: ModelConfig, state: dict[str, Tensor]) -> Any:
    model = transformers.LlamaForCausalLM(hf_config(transformers, config))
    model.load_state_dict(hf_state(state, config), strict=True)
    return model
