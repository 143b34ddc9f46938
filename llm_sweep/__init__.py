"""llm_sweep: Hydra sweeps for small-LLM pretraining under a fixed compute budget.

`build_model` and `load_model` load on first use, so that light commands
(`python -m llm_sweep.report`, `.plan`) do not pay for torch at import time.
"""
from llm_sweep.lazy import lazy_exports

__version__ = "0.1.0"
_EXPORTS = {"build_model": "models.build", "load_model": "training.checkpoint"}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
