"""`python -m llm_sweep` (and the `llm-sweep` script): compose the Hydra config, train, return
the final validation loss. Under torchrun every process runs this app; the processes other
than rank 0 keep no Hydra output of their own and train in rank 0's run directory."""
from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
from typing import Iterator, Optional

import hydra
from omegaconf import DictConfig

from llm_sweep.core.config import CONF_DIR, register_configs
from llm_sweep.core.world import World
from llm_sweep.core.console import exit_with_error
from llm_sweep.job import CTRL_C_EXIT_CODE, run_job
from llm_sweep.sweeping.command_line import check_command_line

register_configs()
# Hydra writes these for the run; only rank 0 does (its run directory is everyone's).
QUIET_RANK = ("hydra.output_subdir=null", "hydra/job_logging=disabled", "hydra/hydra_logging=disabled")


@hydra.main(version_base=None, config_path=str(CONF_DIR), config_name="config")
def hydra_app(cfg: DictConfig) -> Optional[float]:
    return run_job(cfg)


@contextlib.contextmanager
def quiet_unless_rank_zero() -> Iterator[None]:
    """Started as a rank other than 0 (torchrun, or RANK/WORLD_SIZE set by hand): Hydra runs in
    a scratch folder, removed at the end (the job trains in the run directory that rank 0
    broadcasts)."""
    rank = World.from_env().rank
    if rank == 0:
        yield
        return
    scratch = tempfile.mkdtemp(prefix=f"llm_sweep-rank{rank}-")
    sys.argv += [f"hydra.run.dir={scratch}", *QUIET_RANK]  # later overrides win
    try:
        yield
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main() -> None:
    check_command_line(sys.argv[1:])  # Hydra's own mistakes as one line, before it reports them
    try:
        with quiet_unless_rank_zero():
            hydra_app()
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside training: no traceback
        exit_with_error("interrupted", CTRL_C_EXIT_CODE)


if __name__ == "__main__":
    main()
