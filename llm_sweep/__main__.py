"""`python -m llm_sweep`: compose the Hydra config, train, return the final validation loss."""
from __future__ import annotations

from typing import Optional

import hydra
from omegaconf import DictConfig

from llm_sweep.config import CONF_DIR, register_configs
from llm_sweep.job import run_job

register_configs()


@hydra.main(version_base=None, config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> Optional[float]:
    return run_job(cfg)


if __name__ == "__main__":
    main()
