"""The submitit executor of a hydra-submitit-launcher launcher, built exactly as its
`BaseSubmititLauncher.launch()` builds it, for launchers that submit their own callables:
the asynchronous Optuna sweeper (one job per trial) and the packed Slurm launcher (one job
per pack of trials)."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Dict

import submitit
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)
INIT_KEYS = {"max_num_timeout"}  # executor settings given at construction, with the executor's prefix


def executor_for(launcher: Any, config: DictConfig) -> submitit.AutoExecutor:
    """The launcher's executor (`launcher.params` as launch() maps them), with the sweep
    directory created as launch() creates it."""
    kind: str = launcher._EXECUTOR
    params: Dict[str, Any] = launcher.params
    init_params = {"folder": params["submitit_folder"],
                   **{f"{kind}_{k}": v for k, v in params.items() if k in INIT_KEYS}}
    executor = submitit.AutoExecutor(cluster=kind, **init_params)
    shared = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{
        k if k in shared else f"{kind}_{k}": v
        for k, v in params.items() if k not in INIT_KEYS | {"submitit_folder"}})
    sweep_dir = Path(str(config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    if "mode" in config.hydra.sweep:
        os.chmod(sweep_dir, mode=int(str(config.hydra.sweep.mode), 8))
    log.info("Submitit '%s' sweep output dir : %s", kind, sweep_dir)
    return executor
