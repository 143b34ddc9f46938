"""`python -m llm_sweep.prepare [data=slimpajama] [data.source=...]`: fill the token cache.

Run it once where the data is reachable (e.g. a login node with internet) so that
training jobs on offline nodes find the shards in the shared cache.
"""
from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from llm_sweep.core.config import CONF_DIR, load_config, register_configs
from llm_sweep.core.console import user_errors
from llm_sweep.data.cache import prepare_dataset

# Preparing data writes nothing but the cache: no run directory, no Hydra logs.
_QUIET_HYDRA = ("hydra.run.dir=.", "hydra.output_subdir=null",
                "hydra/job_logging=disabled", "hydra/hydra_logging=disabled")


@hydra.main(version_base=None, config_path=str(CONF_DIR), config_name="config")
@user_errors
def _prepare(cfg: DictConfig) -> None:
    prepare_dataset(load_config(cfg).data)


def main() -> None:
    register_configs()
    given = {arg.split("=", 1)[0].lstrip("+~") for arg in sys.argv[1:]}
    sys.argv[1:1] = [arg for arg in _QUIET_HYDRA if arg.split("=", 1)[0] not in given]
    _prepare()


if __name__ == "__main__":
    main()
