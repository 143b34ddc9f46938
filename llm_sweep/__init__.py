"""llm_sweep: Hydra sweeps for small-LLM pretraining under a fixed compute budget.

The packages, lowest first: `core` (what a run is and leaves behind; imports no torch),
`models`, `optim`, `data`, `hardware`, `training` (the one training loop), then the
services `tracking`, `sweeping`, and each command's package (`bench`, `plan`, `report`).
"""

__version__ = "0.1.0"
