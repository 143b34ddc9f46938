"""`sweep.dry_run` and `sweep.max_gpu_hours`: a sweep looked at before anything launches.

`sweep.dry_run=true` prints the jobs a sweep would launch (the basic sweeper's grid, a
named sweep, or an Optuna study's trials left and its search space), each job's compute
(FLOPs, tokens, tokens/param) and expected time, the total in GPU-hours and what the
launcher would submit, then exits 0 without launching anything. `sweep.max_gpu_hours=N`
refuses, in one line with exit code 2, a sweep expected to need more, dry run or not; and
a sweep that packs trials on GPUs (`distributed.trials_per_gpu`) is refused the same way when
its costliest trial would not fit in its share of a GPU's memory (llm_sweep.sweeping.packing).

Both run in `on_multirun_start`, which Hydra calls before the sweeper launches anything;
this callback comes first in conf/config.yaml, so a refused or dry sweep does not even
create its MLflow parent run. A single run gets the same in `on_run_start`. Hydra
instantiates callbacks for every command, so the preview itself loads only when asked for.
"""
from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, Optional

from hydra.errors import HydraException
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from llm_sweep.core import console
from llm_sweep.core.config import SweepConfig
from llm_sweep.core.console import exit_with_error
from llm_sweep.core.errors import LlmSweepError
from llm_sweep.core.rules import check

if TYPE_CHECKING:
    from llm_sweep.sweeping.preview import SweepPreview


class SweepPreviewCallback(Callback):
    """Dry run and GPU-hour limit of a sweep (or of a single run), before any launch."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        preview_or_refuse(config, multirun=True)

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        preview_or_refuse(config, multirun=False)


def preview_or_refuse(config: DictConfig, multirun: bool) -> None:
    settings = sweep_settings(config)
    packed = multirun and (OmegaConf.select(config, "distributed.trials_per_gpu", default=1) or 1) > 1
    if settings is None or not (settings.dry_run or settings.max_gpu_hours is not None or packed):
        return
    # only in a multirun: every run loads this callback
    from llm_sweep.sweeping.preview import preview_sweep
    from llm_sweep.sweeping.preview_text import format_preview

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. a head size that is not a multiple of 64
            preview = preview_sweep(config, settings, multirun)
    except (LlmSweepError, HydraException, ValueError) as error:  # a rule, the override grammar
        exit_with_error(str(error).strip().splitlines()[0])
    if settings.dry_run:
        console.show(format_preview(preview, config))
    refuse_if_too_large(preview, settings.max_gpu_hours)
    refuse_if_packing_overflows(preview)
    if settings.dry_run:
        raise SystemExit(0)


def sweep_settings(config: DictConfig) -> Optional[SweepConfig]:
    """The checked `sweep.*` settings; None for an app without them. A bad value exits 2."""
    if not isinstance(config.get("sweep"), DictConfig):
        return None
    settings = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(SweepConfig), config.sweep))
    try:
        check(settings, "sweep.")
    except LlmSweepError as error:
        exit_with_error(error)
    return settings


def refuse_if_packing_overflows(preview: SweepPreview) -> None:
    """Trials packed on a GPU (distributed.trials_per_gpu) that cannot each have their share
    of its memory: one line, dry run or not, before anything launches."""
    from llm_sweep.sweeping.packing import packing_error  # only where trials are packed

    for per_gpu in sorted({job.per_gpu for job in preview.jobs if job.per_gpu > 1}):
        needs = [(job.num, job.memory_bytes) for job in preview.jobs if job.per_gpu == per_gpu]
        why = packing_error(needs, per_gpu, preview.memory)
        if why:
            exit_with_error(f"{why}; nothing was launched")


def refuse_if_too_large(preview: SweepPreview, max_gpu_hours: Optional[float]) -> None:
    if max_gpu_hours is not None and preview.gpu_hours > max_gpu_hours:
        exit_with_error(f"sweep.max_gpu_hours={max_gpu_hours:g}: this sweep of {preview.n_jobs} job(s) is "
                        f"expected to need {preview.gpu_hours:,.3g} GPU-hours; nothing was launched "
                        "(sweep.dry_run=true lists the jobs and their cost)")
