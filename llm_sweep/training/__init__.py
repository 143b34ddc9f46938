"""Training: the step functions, the loop, budgets, checkpoints and the metrics window.

`train(run, run_dir, sinks, stop)` is the one training function; `forward_backward`,
`optimizer_step` and `evaluate` (training.steps) are the steps it, and the bench, run.
Members load on first use (llm_sweep.lazy): the job imports the stop request without torch.
"""
from llm_sweep.lazy import lazy_exports

_EXPORTS = {"train": "loop", "JsonlSink": "sinks", "RunInfo": "sinks", "Sink": "sinks",
            "RunInterrupted": "stop", "RunPruned": "stop", "StopRequest": "stop"}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
