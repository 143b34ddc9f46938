"""llm_sweep: Hydra sweeps for small-LLM pretraining under a fixed compute budget.

`build_model` and `load_model` are imported lazily so that light commands
(`python -m llm_sweep.report`, `.plan`) do not pay for torch at import time.
"""
from __future__ import annotations

from typing import Any

__all__ = ["build_model", "load_model"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "build_model":
        from llm_sweep.models import build_model

        return build_model
    if name == "load_model":
        from llm_sweep.checkpoint import load_model

        return load_model
    raise AttributeError(f"module 'llm_sweep' has no attribute {name!r}")
