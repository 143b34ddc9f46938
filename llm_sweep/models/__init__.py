"""GPT-2 and Llama-style language models, built from a ModelConfig.

Members load on first use (llm_sweep.lazy): importing the config schema does not load torch.
"""
from llm_sweep.lazy import lazy_exports

_EXPORTS = {"ARCHS": "config", "ModelConfig": "config", "CausalLM": "layers", "GPT2": "gpt2",
            "Llama": "llama", "build_model": "build", "model_config": "build",
            "unwrap": "build"}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
