"""A sweep's dry run in words: its jobs and their cost, and what the launcher would submit."""
from __future__ import annotations

from typing import List

from omegaconf import DictConfig
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution

from llm_sweep.report.tables import markdown_table, ratio, si
from llm_sweep.sweeping.costs import EVAL_SPEEDUP, START_UP_S, VAL_SPLIT_UNKNOWN
from llm_sweep.sweeping.packing import GiB
from llm_sweep.sweeping.preview import PlannedJob, SweepPreview, job_line, launcher_kind

COLUMNS = ("#", "overrides", "parametrization", "params", "tokens", "FLOPs", "tokens/param", "binding budget",
           "train", "wall", "GPU-h")


def duration(seconds: float) -> str:
    seconds = float(f"{seconds:.3g}")  # 59.9996 s reads as 1 min
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"


def format_preview(preview: SweepPreview, config: DictConfig) -> str:
    head = describe_study(preview) if preview.study is not None else describe_jobs(preview)
    bound = " at most (the costliest corner, per trial)" if preview.study is not None else ""
    lines = ["Dry run: nothing is launched.", head,
             f"Total: {preview.n_jobs} job(s), {preview.gpu_hours:,.3g} GPU-hours{bound}.",
             f"Throughput: {preview.rate.source}.",
             f"Wall time: training, evaluations (forward only, at {EVAL_SPEEDUP:g}x the training rate), "
             f"start-up ({START_UP_S:g} s, assumed) and compile ({preview.rate.compile_s:g} s where a job "
             "compiles; a cold cache takes 1-2 min)."]
    if any(job.cost is not None and not job.cost.eval_priced for job in preview.jobs):
        lines.append(f"+: {VAL_SPLIT_UNKNOWN} (python -m llm_sweep.prepare).")
    if preview.multirun:
        lines.append(describe_launcher(preview, config.hydra.launcher))
    packing = describe_packing(preview)
    if packing:
        lines.append(packing)
    return "\n".join(lines)


def describe_packing(preview: SweepPreview) -> str:
    """Trials sharing GPUs: the GPU-hours saved and each trial's memory against its share."""
    per_gpu = max((job.per_gpu for job in preview.jobs), default=1)
    if per_gpu <= 1 or preview.memory is None:
        return ""
    packed, whole = preview.gpu_hours, preview.gpu_hours_unpacked
    need = max(job.memory_bytes for job in preview.jobs) / GiB
    if packed <= whole:
        saving = (f"{whole - packed:,.3g} saved if each trial keeps its one-trial rate "
                  "(python -m llm_sweep.bench.packing measures it)")
    else:
        saving = "more: the Slurm jobs hold more GPUs than their trials fill (fewer GPUs or more trials per job)"
    return (f"Packing: {per_gpu} trials per GPU (distributed.trials_per_gpu): {packed:,.3g} GPU-hours against "
            f"{whole:,.3g} at one trial per GPU, {saving}. GPU memory: the costliest trial needs about "
            f"{need:.2f} GiB of its 1/{per_gpu} of {preview.memory.source}.")


def cost_table(jobs: List[PlannedJob]) -> str:
    """One row per job; the overrides column shows what differs between jobs."""
    shared = set.intersection(*(set(job.overrides) for job in jobs)) if len(jobs) > 1 else set()
    rows = []
    for job in jobs:
        varying = " ".join(o for o in job.overrides if o not in shared)
        c = job.cost
        cells = ([c.parametrization, si(c.params), si(c.tokens), f"{c.flops:.3g}", ratio(c.tokens_per_param),
                  c.binding, duration(c.seconds), duration(c.wall_s) + ("" if c.eval_priced else "+"),
                  f"{c.gpu_hours:.3g}"] if c is not None
                 else [f"fails: {job.error}".replace("|", "/"), *[""] * 8])
        rows.append([str(job.num), varying or "-", *cells])
    return markdown_table(COLUMNS, rows, [True, False, False, True, True, True, True, False, True, True, True])


def describe_jobs(preview: SweepPreview) -> str:
    failing = [job.num for job in preview.jobs if job.error is not None]
    lines = [f"{len(preview.jobs)} job(s):", *(job_line(job) for job in preview.jobs), "",
             cost_table(preview.jobs)]
    if failing:
        lines.append(f"Job(s) {failing} would fail at once (their config breaks a rule) and count for nothing.")
    return "\n".join(lines)


def describe_study(preview: SweepPreview) -> str:
    study = preview.study
    conf = study.conf
    mode = "asynchronously" if study.asynchronous else "in batches"
    space = "\n".join(f"  {p.key}: {distribution_text(p.distribution)}" for p in study.space.params)
    samples = "\n".join(f"  {' '.join(overrides)}" for overrides in study.samples)
    return "\n".join([
        f"Optuna study '{study.study_name}' ({conf.storage or 'in memory'}): {study.done} of {conf.n_trials} "
        f"trials done, {study.to_run} to run, {conf.n_jobs} at a time {mode}{_seeds_text(conf.seeds)}.",
        f"Search space:\n{space}",
        f"Trials are sampled at run time (sampler {conf.sampler}); random points of the space:\n{samples}",
        f"Cost of a trial at the {len(preview.jobs)} corner(s) of the search space:", "",
        cost_table(preview.jobs)])


def distribution_text(dist: BaseDistribution) -> str:
    """An Optuna distribution in the override grammar it came from."""
    if isinstance(dist, CategoricalDistribution):
        return f"choice({', '.join(map(str, dist.choices))})"
    bounds = f"interval({dist.low}, {dist.high})"
    if isinstance(dist, IntDistribution):
        stop = dist.high + dist.step
        bounds = f"int({bounds})" if dist.step == 1 else f"range({dist.low}, {stop}, {dist.step})"
    return f"tag(log, {bounds})" if dist.log else bounds


def describe_launcher(preview: SweepPreview, launcher: DictConfig) -> str:
    kind, study = launcher_kind(launcher), preview.study
    in_flight = study is not None and study.asynchronous
    if kind == "local":
        at_once = study.conf.n_jobs if study is not None else max(preview.batches, default=0)
        return (f"Launcher: submitit local processes, {at_once} at a time, time limit "
                f"{launcher.timeout_min} min.")
    if kind == "basic":
        return "Launcher: Hydra's basic launcher runs the jobs in this process, one after another."
    resources = (f"partition {launcher.get('partition') or '(the default)'}, time limit {launcher.timeout_min} "
                 f"min, {launcher.get('gpus_per_node') or 0} GPU(s) x {launcher.get('nodes') or 1} node(s), "
                 f"{launcher.get('cpus_per_task') or 1} CPU(s) and {launcher.get('mem_gb') or '-'} GB per job")
    if preview.packs is not None:
        packs = preview.packs
        return (f"Launcher: Slurm, {preview.n_jobs} trial(s) packed {packs.size} per job into "
                f"{packs.jobs(preview.n_jobs)} job(s), {packs.at_once} at a time in each ({packs.per_gpu} per "
                f"GPU); {resources}.")
    if in_flight:
        return (f"Launcher: Slurm, {study.jobs_to_run} job(s) submitted one at a time (no array), "
                f"{study.conf.n_jobs} trial(s) in flight; {resources}.")
    sizes = batch_sizes(preview)
    parallel = launcher.get("array_parallelism") or 256
    arrays = ", ".join(f"sbatch --array=0-{n - 1}%{min(parallel, n)}" for n in sizes[:3])
    more = f" and {len(sizes) - 3} more" if len(sizes) > 3 else ""
    count = "one job array" if len(sizes) == 1 else f"{len(sizes)} job arrays one after another"
    return (f"Launcher: Slurm, {count} ({arrays}{more}), at most {parallel} tasks running at once; "
            f"{resources}.")


def _seeds_text(seeds: List[int]) -> str:
    if len(seeds) < 2:
        return ""
    return f"; each trial {len(seeds)} jobs, seeds {', '.join(map(str, seeds))}, its value their mean"


def batch_sizes(preview: SweepPreview) -> List[int]:
    """Jobs per launch: the basic sweeper's batches, or n_jobs per batch of trials."""
    if preview.study is None:
        return preview.batches
    n_jobs, to_run, runs = preview.study.conf.n_jobs, preview.study.to_run, preview.study.runs_per_trial
    return [min(n_jobs, to_run - start) * runs for start in range(0, to_run, n_jobs)]
