"""A tiny Hydra app for the Optuna sweeper tests: returns (x - 2)^2 + y^2 + noise * seed.

Like the training job, it reports `val/loss` at each step to the pruning reporter and,
when pruned, writes status.json {"status": "pruned"} and returns NaN. A trial that is not
pruned sleeps `sleep` seconds before it returns: a slow trial.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from hydra_plugins.llm_sweep_optuna.pruning import OptunaPruningReporter
from llm_sweep.training.stop import StopRequest


@hydra.main(version_base=None, config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    loss = (cfg.x - 2) ** 2 + cfg.y ** 2 + cfg.noise * cfg.seed
    if cfg.fail_above is not None and cfg.x > cfg.fail_above:
        raise ValueError(f"x={cfg.x} is above {cfg.fail_above}")
    if cfg.steps and pruned(loss, cfg.steps):
        status = Path(HydraConfig.get().runtime.output_dir) / "status.json"
        status.write_text(json.dumps({"status": "pruned"}))
        return float("nan")
    time.sleep(cfg.sleep)
    return loss


def pruned(loss: float, steps: int) -> bool:
    """Report a val/loss that approaches `loss` at each step, stopping as the training loop
    does when the pruner asks; True if the trial was pruned."""
    stop = StopRequest()
    reporter = OptunaPruningReporter.from_env(stop)
    assert reporter is not None, "steps > 0 needs an Optuna sweep with a storage"
    for step in range(steps):
        reporter.log_metrics({"val/loss": loss + 1 / (step + 1)}, step)
        if stop.requested:
            return True
    return False


if __name__ == "__main__":
    main()
