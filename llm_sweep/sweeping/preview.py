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
from llm_sweep.sweeping.packing import GpuMemory, PackLayout, gpu_memory


@dataclass
class PlannedJob:
    num: int
    overrides: List[str]
    cost: Optional[JobCost] = None
    error: Optional[str] = None  # its config breaks a rule: the job would fail at once
    per_gpu: int = 1  # trials sharing its GPU (distributed.trials_per_gpu, where the launcher packs)
    memory_bytes: float = 0.0  # its estimated peak GPU memory (llm_sweep.sweeping.packing)


@dataclass
class SweepPreview:
    jobs: List[PlannedJob]  # the basic sweeper: every job; Optuna: the search space's corners
    batches: List[int]  # jobs per launch (the basic sweeper's max_batch_size)
    rate: Throughput
    study: Any = None  # Optuna: the sweeper's StudyPreview
    multirun: bool = True
    memory: Optional[GpuMemory] = None
    packs: Optional[PackLayout] = None  # hydra/launcher=slurm_packed: trials grouped into Slurm jobs

    @property
    def n_jobs(self) -> int:
        return self.study.jobs_to_run if self.study is not None else len(self.jobs)

    @property
    def gpu_hours(self) -> float:
        """The total: every job's, or for Optuna the trials left (times their seeds) times the costliest corner."""
        costs = [job.cost.gpu_hours for job in self.jobs if job.cost is not None]
        if self.packs is not None and self.study is None:  # a job's GPUs, held while its trials run
            return self.packs.gpu_hours([job.cost.wall_s for job in self.jobs if job.cost is not None])
        if self.study is not None:
            return self.study.jobs_to_run * max(costs, default=0.0)
        return sum(costs)

    @property
    def gpu_hours_unpacked(self) -> float:
        """The same jobs at one trial per GPU."""
        costs = [job.cost.gpu_hours / job.cost.share for job in self.jobs if job.cost is not None]
        if self.study is not None:
            return self.study.jobs_to_run * max(costs, default=0.0)
        return sum(costs)


def preview_sweep(config: DictConfig, settings: SweepConfig, multirun: bool) -> SweepPreview:
    rate = throughput_for(config, settings, launcher_kind(config.hydra.launcher) in ("slurm", "packed"))
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
    memory = gpu_memory(settings.bench)
    for job in jobs:
        estimate(config, job, rate, compose=multirun, memory=memory)
    return SweepPreview(jobs, batches, rate, study, multirun, memory, pack_layout(config, jobs))


def pack_layout(config: DictConfig, jobs: List[PlannedJob]) -> Optional[PackLayout]:
    launcher = config.hydra.launcher
    if launcher_kind(launcher) != "packed":
        return None
    return PackLayout(launcher.get("gpus_per_node") or 0, max((job.per_gpu for job in jobs), default=1),
                      launcher.get("trials_per_job"))


def basic_sweep_jobs(sweeper: type, config: DictConfig, arguments: List[str]) -> List[List[List[str]]]:
    """The jobs, by batch, exactly as Hydra's basic sweeper expands them (its own code)."""
    params = [f"{key}={value}" for key, value in (config.hydra.sweeper.get("params") or {}).items()]
    parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
    return sweeper.split_arguments(parser.parse_overrides(params + arguments),
                                   config.hydra.sweeper.get("max_batch_size"))


def estimate(config: DictConfig, job: PlannedJob, rate: Throughput, compose: bool,
             memory: Optional[GpuMemory] = None) -> None:
    """The job's cost from its config, composed as the launcher would compose it (a single
    run's is `config` itself)."""
    try:
        job_config = (GlobalHydra.instance().config_loader().load_sweep_config(config, job.overrides)
                      if compose else config)
        run: RunConfig = load_config(job_config)
        packs = compose and launcher_kind(config.hydra.launcher) in ("local", "packed")
        job.per_gpu = run.distributed.trials_per_gpu if packs else 1
        job.memory_bytes = (memory or gpu_memory(None)).need(run)
        job.cost = job_cost(run, rate, devices_per_job(config.hydra.launcher, run) if compose else 1,
                            val_tokens(run), compiles(run, rate), share=1 / job.per_gpu)
    except Exception as error:  # a rule or a composition error: the job would fail the same way
        job.error = str(error).strip().splitlines()[0]


def launcher_kind(launcher: DictConfig) -> str:
    """`packed` (Slurm jobs of several trials), `slurm`, `local` (submitit's local processes)
    or `basic` (Hydra's, in this process), told by the settings the launcher takes (a packed
    launcher has trials per job, a Slurm queue a partition, submitit's local one tasks per
    node), not by its class: Hydra's plugin discovery may load a launcher's module a second
    time, and a class check would then miss its own class."""
    if "trials_per_job" in launcher:
        return "packed"
    if "partition" in launcher:
        return "slurm"
    return "local" if "tasks_per_node" in launcher else "basic"


def devices_per_job(launcher: DictConfig, run: RunConfig) -> int:
    """GPUs a job holds: Slurm's gpus_per_node x nodes; a local trial claims
    distributed.gpus_per_trial of the machine's (llm_sweep.sweeping.gpu_slots); a packed
    Slurm trial and any other job, one device (or its share of one: JobCost.share)."""
    kind = launcher_kind(launcher)
    if kind == "slurm":
        return max(1, launcher.get("gpus_per_node") or 0) * max(1, launcher.get("nodes") or 1)
    return run.distributed.gpus_per_trial if kind == "local" else 1


def job_line(job: PlannedJob) -> str:
    """A job as the submitit launchers log it: `#<num> : <overrides>`."""
    return f"#{job.num} : {' '.join(filter_overrides(job.overrides))}"
