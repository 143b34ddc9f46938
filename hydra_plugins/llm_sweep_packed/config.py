"""The packed Slurm launcher's config schema (`hydra.launcher.*`), registered in Hydra's
ConfigStore as `hydra/launcher=submitit_slurm_packed`; conf/hydra/launcher/slurm_packed.yaml
is the preset users pick. No `from __future__ import annotations` (see llm_sweep_optuna/config.py).
"""
from dataclasses import dataclass
from typing import Optional

from hydra.core.config_store import ConfigStore
from hydra_plugins.hydra_submitit_launcher.config import SlurmQueueConf


@dataclass
class PackedSlurmQueueConf(SlurmQueueConf):
    _target_: str = "hydra_plugins.llm_sweep_packed.packed_launcher.PackedSlurmLauncher"
    # Trials per Slurm job; null: as many as run at once, gpus_per_node (at least 1) times
    # distributed.trials_per_gpu. More than that queue inside the job for a free place.
    trials_per_job: Optional[int] = None


def register() -> None:
    ConfigStore.instance().store(group="hydra/launcher", name="submitit_slurm_packed",
                                 node=PackedSlurmQueueConf, provider="llm_sweep")
