"""Optimizers (AdamW, SophiaG), their step hooks, and learning-rate schedules.

Members load on first use (llm_sweep.lazy): importing the config schema does not load torch.
"""
from llm_sweep.lazy import lazy_exports

_EXPORTS = {"build_optimizer": "build", "OptimizerHook": "hooks", "SophiaG": "sophia",
            "SophiaHessianHook": "sophia", "lr_at": "schedules", "set_lr": "schedules"}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
