"""A sweep before it runs: the jobs it would launch and what each would cost.

The basic sweeper's jobs are expanded with its own `BasicSweeper.split_arguments`, so the
list is the one a real run launches; an Optuna sweep is previewed by the plugin
(trials left, search space, its corners). Each job's config is composed as the launcher
composes it, and costed from its model, batch and budget (llm_sweep.sweeping.costs).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional

from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import filter_overrides
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from llm_sweep.core.config import RunConfig, SweepConfig, load_config
from llm_sweep.sweeping.costs import JobCost, Throughput, job_cost
from llm_sweep.sweeping.measured_rate import compiles, throughput_for, val_tokens


@dataclass
class PlannedJob:
    num: int
    overrides: List[str]
    cost: Optional[JobCost] = None
    error: Optional[str] = None  # its config breaks a rule: the job would fail at once


@dataclass
class SweepPreview:
    jobs: List[PlannedJob]  # the basic sweeper: every job; Optuna: the search space's corners
    batches: List[int]  # jobs per launch (the basic sweeper's max_batch_size)
    rate: Throughput
    study: Any = None  # Optuna: the sweeper's StudyPreview
    multirun: bool = True

    @property
    def n_jobs(self) -> int:
        return self.study.to_run if self.study is not None else len(self.jobs)

    @property
    def gpu_hours(self) -> float:
        """The total: every job's, or for Optuna the trials left times the costliest corner."""
        costs = [job.cost.gpu_hours for job in self.jobs if job.cost is not None]
        if self.study is not None:
            return self.study.to_run * max(costs, default=0.0)
        return sum(costs)


def preview_sweep(config: DictConfig, settings: SweepConfig, multirun: bool) -> SweepPreview:
    rate = throughput_for(config, settings, launcher_kind(config.hydra.launcher) == "slurm")
    # Without sweep.dry_run: the jobs as a real run launches them.
    arguments = [str(o) for o in OmegaConf.to_container(config.hydra.overrides.task, resolve=False)
                 if str(o).split("=")[0].lstrip("+~") != "sweep.dry_run"]
    sweeper = get_class(config.hydra.sweeper._target_)
    if not multirun:
        jobs, batches, study = [PlannedJob(0, arguments)], [1], None
    elif hasattr(sweeper, "preview"):  # the Optuna sweeper previews its own study
        settings_ = OmegaConf.to_container(config.hydra.sweeper, resolve=True)
        study = sweeper.preview(settings_, arguments, config.hydra.job.name, config.hydra.launcher._target_)
        jobs, batches = [PlannedJob(i, o) for i, o in enumerate(study.corners)], [study.conf.n_jobs]
    elif hasattr(sweeper, "split_arguments"):  # Hydra's basic sweeper: its own expansion
        grid = basic_sweep_jobs(sweeper, config, arguments)
        jobs = [PlannedJob(i, o) for i, o in enumerate(o for batch in grid for o in batch)]
        batches, study = [len(batch) for batch in grid], None
    else:
        raise ValueError(f"the dry run and sweep.max_gpu_hours know the basic and the Optuna sweepers, "
                         f"not {config.hydra.sweeper._target_}")
    for job in jobs:
        estimate(config, job, rate, compose=multirun)
    return SweepPreview(jobs, batches, rate, study, multirun)


def basic_sweep_jobs(sweeper: type, config: DictConfig, arguments: List[str]) -> List[List[List[str]]]:
    """The jobs, by batch, exactly as Hydra's basic sweeper expands them (its own code)."""
    params = [f"{key}={value}" for key, value in (config.hydra.sweeper.get("params") or {}).items()]
    parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
    return sweeper.split_arguments(parser.parse_overrides(params + arguments),
                                   config.hydra.sweeper.get("max_batch_size"))


def estimate(config: DictConfig, job: PlannedJob, rate: Throughput, compose: bool) -> None:
    """The job's cost from its config, composed as the launcher would compose it (a single
    run's is `config` itself)."""
    try:
        job_config = (GlobalHydra.instance().config_loader().load_sweep_config(config, job.overrides)
                      if compose else config)
        run: RunConfig = load_config(job_config)
        job.cost = job_cost(run, rate, devices_per_job(config.hydra.launcher, run) if compose else 1,
                            val_tokens(run), compiles(run, rate))
    except Exception as error:  # a rule or a composition error: the job would fail the same way
        job.error = str(error).strip().splitlines()[0]


def launcher_kind(launcher: DictConfig) -> str:
    """`slurm`, `local` (submitit's local processes) or `basic` (Hydra's, in this process),
    told by the settings the launcher takes (a Slurm queue has a partition, submitit's local
    one tasks per node), not by its class: Hydra's plugin discovery may load a launcher's
    module a second time, and a class check would then miss its own class."""
    if "partition" in launcher:
        return "slurm"
    return "local" if "tasks_per_node" in launcher else "basic"


def devices_per_job(launcher: DictConfig, run: RunConfig) -> int:
    """GPUs a job holds: Slurm's gpus_per_node x nodes; a local trial claims
    distributed.gpus_per_trial of the machine's (llm_sweep.sweeping.gpu_slots); one device otherwise."""
    kind = launcher_kind(launcher)
    if kind == "slurm":
        return max(1, launcher.get("gpus_per_node") or 0) * max(1, launcher.get("nodes") or 1)
    return run.distributed.gpus_per_trial if kind == "local" else 1


def job_line(job: PlannedJob) -> str:
    """A job as the submitit launchers log it: `#<num> : <overrides>`."""
    return f"#{job.num} : {' '.join(filter_overrides(job.overrides))}"
