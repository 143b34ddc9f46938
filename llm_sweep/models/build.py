"""Building a model from its config."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from torch import nn

from llm_sweep.core.errors import ConfigError
from llm_sweep.core.model_config import ModelConfig, with_vocab_size
from llm_sweep.core.rules import check
from llm_sweep.models.gpt2 import GPT2
from llm_sweep.models.layers import CausalLM
from llm_sweep.models.llama import Llama

_MODELS: dict[str, type[CausalLM]] = {"gpt2": GPT2, "llama": Llama}


def model_config(cfg: ModelConfig | Mapping[str, Any]) -> ModelConfig:
    """A ModelConfig from itself or from a mapping (dict, DictConfig) of its fields; an
    unset vocab_size is the default tokenizer's (GPT-2's, padded: 50304)."""
    if isinstance(cfg, ModelConfig):
        return with_vocab_size(cfg)
    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(str(key) for key in cfg if key not in fields)
    if unknown:
        raise ConfigError(f"model.{unknown[0]} is not a model setting; known: {', '.join(sorted(fields))}")
    return with_vocab_size(ModelConfig(**{key: cfg[key] for key in cfg}))


def build_model(cfg: ModelConfig | Mapping[str, Any]) -> CausalLM:
    """The model described by cfg, initialized (parameters on the default device).

    A public entry point that may be called without `load_config`, so it checks the
    model keys against the same rules (llm_sweep.core.model_config).
    """
    config = model_config(cfg)
    check(config, "model.")
    return _MODELS[config.arch](config)


def unwrap(model: nn.Module) -> nn.Module:
    """The module under torch.compile and DistributedDataParallel wrappers, in any order:
    its own attributes (`features`, `lm_head`) and clean state_dict keys."""
    while True:
        inner = getattr(model, "_orig_mod", None) or getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner
