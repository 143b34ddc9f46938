"""The GPT-2 baseline as a Hugging Face `GPT2LMHeadModel`.

Our model has no biases, so GPT-2's biases are written as zeros; GPT-2's Conv1D stores
weights as (in, out), the transpose of nn.Linear's.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from llm_sweep.core.model_config import ModelConfig
from llm_sweep.models.llama_hf import token_ids


def hf_config(transformers: Any, config: ModelConfig) -> Any:
    return transformers.GPT2Config(
        vocab_size=config.vocab_size, n_positions=config.max_seq_len, n_embd=config.n_embd,
        n_layer=config.n_layer, n_head=config.heads, n_inner=config.mlp_hidden,
        activation_function="gelu_pytorch_tanh", layer_norm_epsilon=1e-5,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        tie_word_embeddings=config.weight_tying, **token_ids(config))


def hf_state(state: dict[str, Tensor], config: ModelConfig) -> dict[str, Tensor]:
    """Our state_dict under GPT2LMHeadModel's keys."""
    hf = {"transformer.wte.weight": state["tok_emb.weight"],
          "transformer.wpe.weight": state["pos_emb.weight"],
          "lm_head.weight": state["lm_head.weight"]}
    _norm(hf, "transformer.ln_f", state["norm.weight"])
    for i in range(config.n_layer):
        ours, theirs = f"blocks.{i}.", f"transformer.h.{i}."
        _norm(hf, theirs + "ln_1", state[ours + "attn_norm.weight"])
        _norm(hf, theirs + "ln_2", state[ours + "mlp_norm.weight"])
        for our_name, their_name in [("attn.qkv", "attn.c_attn"), ("attn.out_proj", "attn.c_proj"),
                                     ("mlp.fc", "mlp.c_fc"), ("mlp.out_proj", "mlp.c_proj")]:
            weight = state[ours + our_name + ".weight"]
            hf[theirs + their_name + ".weight"] = weight.t()
            hf[theirs + their_name + ".bias"] = torch.zeros(weight.size(0))
    return {key: value.contiguous() for key, value in hf.items()}


def _norm(hf: dict[str, Tensor], prefix: str, weight: Tensor) -> None:
    hf[prefix + ".weight"] = weight
    hf[prefix + ".bias"] = torch.zeros_like(weight)


def to_hf(transformers: Any, config: ModelConfig, state: dict[str, Tensor]) -> Any:
    model = transformers.GPT2LMHeadModel(hf_config(transformers, config))
    model.load_state_dict(hf_state(state, config), strict=True)
    return model
