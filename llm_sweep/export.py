"""Export a trained checkpoint as a Hugging Face transformers model directory.

    python -m llm_sweep.export CHECKPOINT_OR_RUN_DIR OUT_DIR

The result loads with `AutoModelForCausalLM.from_pretrained(OUT_DIR)`: a
LlamaForCausalLM for `arch: llama`, a GPT2LMHeadModel for `arch: gpt2`. Our models have
no biases, so GPT-2's biases are written as zeros. Our RoPE already uses Hugging Face's
rotate-half pairing, so q and k rows are copied unpermuted.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from llm_sweep.checkpoint import load_checkpoint, resolve_checkpoint, unwrap
from llm_sweep.errors import DataError, LlmSweepError
from llm_sweep.models import CausalLM, ModelConfig, build_model
from llm_sweep.models.llama import ROPE_THETA

COMPILE_PREFIX = "_orig_mod."  # torch.compile's wrapper prepends it to every key
GPT2_END_OF_TEXT = 50256  # the GPT-2 tokenizer's <|endoftext|>


def load_checkpoint_model(path: str | Path) -> CausalLM:
    """Our model with the weights of a checkpoint file or of a run directory's newest one."""
    path = resolve_checkpoint(Path(path))
    checkpoint = load_checkpoint(path)
    if "model" not in checkpoint or "config" not in checkpoint:
        raise DataError(f"{path} is not a training checkpoint (needs 'model' and 'config')")
    model = build_model(checkpoint["config"]["model"])
    state = {key.replace(COMPILE_PREFIX, ""): value for key, value in checkpoint["model"].items()}
    model.load_state_dict(state)
    return model


def export_hf(checkpoint_path: str | Path, out_dir: str | Path) -> Path:
    """Write the checkpoint (a file or a run directory) as a transformers model to out_dir."""
    return export_model(load_checkpoint_model(checkpoint_path), out_dir)


def export_model(model: CausalLM, out_dir: str | Path) -> Path:
    """Write an in-memory model (compiled or not) as a transformers model directory,
    fp32 safetensors."""
    try:
        import transformers
    except ImportError as exc:
        raise LlmSweepError("exporting needs transformers: pip install 'llm_sweep[hf]'") from exc
    model = unwrap(model)
    config = model.config
    state = {key: value.detach().float().cpu() for key, value in model.state_dict().items()}
    if config.arch == "llama":
        hf_model = transformers.LlamaForCausalLM(_llama_config(transformers, config))
        hf_state = _llama_state(state, config.n_layer)
    else:
        hf_model = transformers.GPT2LMHeadModel(_gpt2_config(transformers, config))
        hf_state = _gpt2_state(state, config.n_layer)
    hf_model.load_state_dict(hf_state, strict=True)
    out_dir = Path(out_dir)
    hf_model.save_pretrained(out_dir)
    return out_dir


def _token_ids(config: ModelConfig) -> dict[str, Any]:
    eot = GPT2_END_OF_TEXT if config.vocab_size > GPT2_END_OF_TEXT else None
    return {"bos_token_id": eot, "eos_token_id": eot}


def _llama_config(transformers: Any, config: ModelConfig) -> Any:
    return transformers.LlamaConfig(
        vocab_size=config.vocab_size, hidden_size=config.n_embd,
        intermediate_size=config.mlp_hidden, num_hidden_layers=config.n_layer,
        num_attention_heads=config.heads, num_key_value_heads=config.heads,
        head_dim=config.n_embd // config.heads, hidden_act="silu",
        max_position_embeddings=config.max_seq_len, rms_norm_eps=config.rmsnorm_eps,
        rope_theta=ROPE_THETA, attention_bias=False, mlp_bias=False,
        tie_word_embeddings=config.weight_tying, **_token_ids(config))


def _gpt2_config(transformers: Any, config: ModelConfig) -> Any:
    return transformers.GPT2Config(
        vocab_size=config.vocab_size, n_positions=config.max_seq_len, n_embd=config.n_embd,
        n_layer=config.n_layer, n_head=config.heads, n_inner=config.mlp_hidden,
        activation_function="gelu_pytorch_tanh", layer_norm_epsilon=1e-5,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        tie_word_embeddings=config.weight_tying, **_token_ids(config))


def _llama_state(state: dict[str, Tensor], n_layer: int) -> dict[str, Tensor]:
    hf = {"model.embed_tokens.weight": state["tok_emb.weight"],
          "model.norm.weight": state["norm.weight"],
          "lm_head.weight": state["lm_head.weight"]}
    for i in range(n_layer):
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


def _gpt2_state(state: dict[str, Tensor], n_layer: int) -> dict[str, Tensor]:
    """GPT-2's Conv1D stores weights as (in, out), the transpose of nn.Linear's."""
    hf = {"transformer.wte.weight": state["tok_emb.weight"],
          "transformer.wpe.weight": state["pos_emb.weight"],
          "lm_head.weight": state["lm_head.weight"]}
    _gpt2_norm(hf, "transformer.ln_f", state["norm.weight"])
    for i in range(n_layer):
        ours, theirs = f"blocks.{i}.", f"transformer.h.{i}."
        _gpt2_norm(hf, theirs + "ln_1", state[ours + "attn_norm.weight"])
        _gpt2_norm(hf, theirs + "ln_2", state[ours + "mlp_norm.weight"])
        for our_name, their_name in [("attn.qkv", "attn.c_attn"), ("attn.out_proj", "attn.c_proj"),
                                     ("mlp.fc", "mlp.c_fc"), ("mlp.out_proj", "mlp.c_proj")]:
            weight = state[ours + our_name + ".weight"]
            hf[theirs + their_name + ".weight"] = weight.t()
            hf[theirs + their_name + ".bias"] = torch.zeros(weight.size(0))
    return {key: value.contiguous() for key, value in hf.items()}


def _gpt2_norm(hf: dict[str, Tensor], prefix: str, weight: Tensor) -> None:
    hf[prefix + ".weight"] = weight
    hf[prefix + ".bias"] = torch.zeros_like(weight)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m llm_sweep.export", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a checkpoint file, or a run directory (its newest checkpoint)")
    parser.add_argument("out_dir", help="the transformers model directory to write")
    args = parser.parse_args(argv)
    try:
        out_dir = export_hf(args.checkpoint, args.out_dir)
    except LlmSweepError as err:
        raise SystemExit(f"error: {err}") from None
    print(f"exported {args.checkpoint} to {out_dir}")


if __name__ == "__main__":
    main()
