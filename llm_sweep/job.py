"""One Hydra job: validate the config, track the run, train, and record how it ended.

Every job writes its status file (llm_sweep.core.run_record): running, then finished, failed,
pruned or killed. Sweeps read it to build their results table and to skip jobs that
already finished with the same config. Whatever a sweep's job raises, the job is recorded
failed (status file, MLflow run with an `error` tag) and returns NaN, so the sweep goes
on; `sweep.fail_fast=true` stops it instead. A single run with a user error prints one
line and exits 2. In a run of several processes (torchrun, a submitit job of several
tasks) every process trains and rank 0 alone records.
"""
from __future__ import annotations

import math
import os
import shlex
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from llm_sweep.core import console
from llm_sweep.core.config import RunConfig, load_config
from llm_sweep.core.console import exit_with_error
from llm_sweep.core.errors import ConfigError, DiskFull, LlmSweepError, PeerLost
from llm_sweep.core.run_record import (MLFLOW_FAILED, MLFLOW_FINISHED, MLFLOW_KILLED, REFUSED_FILE,
                                       STATUS_FAILED, STATUS_FINISHED, STATUS_KILLED, STATUS_PRUNED,
                                       STATUS_RUNNING, config_hash, read_status, write_json,
                                       write_status)
from llm_sweep.core.world import World
from llm_sweep.training.stop import RunInterrupted, RunPruned, StopRequest

if TYPE_CHECKING:
    from llm_sweep.tracking import Tracker


class StoppedByUser(RunInterrupted):
    """Ctrl-C stopped the run at a step boundary, its checkpoint saved."""


CTRL_C_EXIT_CODE = 130  # 128 + SIGINT, as a shell reports a program Ctrl-C ended
TERMINATED_EXIT_CODE = 143  # 128 + SIGTERM


class RunDirTaken(ConfigError):
    """The run directory holds another config's run: its status file is left as it is."""


@dataclass
class JobRecord:
    """How far a job got, and where it records itself (rank 0 of a multi-process run only)."""

    run_dir: Path
    main: bool = True
    digest: Optional[str] = None
    tracker: Optional[Tracker] = None

    def status(self, status: str, **fields: Any) -> None:
        if self.main:
            write_status(self.run_dir, status, config_hash=self.digest, **fields)


def run_job(cfg: DictConfig) -> Optional[float]:
    """The Hydra task: returns the final validation loss (what sweepers minimize)."""
    hydra_cfg = HydraConfig.get()
    record = JobRecord(Path(hydra_cfg.runtime.output_dir))
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    try:
        return _train_job(cfg, record)
    except RunInterrupted as exc:  # Ctrl-C, or a signal nobody requeues on: saved and recorded
        if record.main:
            console.show(f"{exc}. Resume it (same folder, same MLflow run): {resume_command(hydra_cfg)}")
        sys.exit(CTRL_C_EXIT_CODE if isinstance(exc, StoppedByUser) else TERMINATED_EXIT_CODE)
    except KeyboardInterrupt:
        raise  # recorded killed
    except Exception as exc:  # any error: recorded, then reported per run mode
        fail_fast = OmegaConf.select(cfg, "sweep.fail_fast", default=False) is True
        return _failed(cfg, record, exc, multirun and not fail_fast)


def _train_job(cfg: DictConfig, record: JobRecord) -> float:
    run = load_config(cfg)  # a bad value fails here, before torch is imported
    # after validation: a bad value fails before torch and MLflow load
    from llm_sweep.data.cache import check_inputs
    from llm_sweep.sweeping.gpu_slots import claim_gpus_for_trial
    from llm_sweep.training.distributed import as_peer_lost, join_world, leave_world

    record.digest = config_hash(run)
    check_inputs(run.data)  # a missing file or an unreachable hub: before MLflow holds a run
    claim_gpus_for_trial(run.distributed.gpus_per_trial, run.distributed.timeout_s,  # before CUDA starts
                         run.distributed.trials_per_gpu)
    world = join_world(run.distributed.timeout_s)  # the run's one process group, passed down
    try:
        return _train_in_world(run, record, world)
    except RuntimeError as exc:  # a collective that failed because a peer is gone: one line
        raise as_peer_lost(exc) or exc
    finally:
        leave_world()


def _train_in_world(run: RunConfig, record: JobRecord, world: World) -> float:
    # after validation: a bad value fails before torch and MLflow load
    from llm_sweep.training.distributed import broadcast_from_main

    record.main = world.is_main
    record.run_dir = Path(broadcast_from_main(str(record.run_dir), world))  # one run directory
    # Rank 0 reads the status file before anyone writes it: every process decides alike.
    previous = broadcast_from_main(read_status(record.run_dir) if world.is_main else None, world)
    if previous and previous["status"] == STATUS_FINISHED and previous.get("config_hash") == record.digest:
        if world.is_main:
            console.show(f"already finished in {record.run_dir} (val/loss {previous['val_loss']:.4f}); "
                         "skipping")
        return previous["val_loss"]
    if previous and previous.get("config_hash") not in (None, record.digest):
        raise RunDirTaken(f"{record.run_dir} holds a run with a different config "
                          f"({previous['config_hash']}, now {record.digest}); choose a new "
                          "hydra.run.dir / hydra.sweep.dir")
    record.status(STATUS_RUNNING)
    return _train_tracked(run, record, world)


def _train_tracked(run: RunConfig, record: JobRecord, world: World) -> float:
    # after validation: a bad value fails before torch and MLflow load
    from llm_sweep.sweeping.preemption import preemption_guard
    from llm_sweep.tracking import NullTracker, start_tracking
    from llm_sweep.tracking.describe import JobContext
    from llm_sweep.training.loop import train

    record.tracker = tracker = (start_tracking(run, JobContext.current(), record.run_dir, record.digest)
                                if record.main else NullTracker())
    stop = StopRequest()
    sinks = [*tracker.sinks(), *pruning_sinks(stop)] if record.main else []
    try:
        with preemption_guard(stop) as guard:
            try:
                summary = train(run, record.run_dir, sinks=sinks, stop=stop, world=world)
            except RunInterrupted as exc:
                _stopped(record, STATUS_KILLED, str(exc))
                if guard.by_ctrl_c:
                    raise StoppedByUser(f"interrupted: {exc} in {record.run_dir}") from exc
                guard.hand_over()  # under submitit: requeue and exit here
                raise
    except KeyboardInterrupt:
        _stopped(record, STATUS_KILLED, "interrupted")
        raise
    except RunPruned as exc:
        _stopped(record, STATUS_PRUNED, str(exc))
        return math.nan
    tracker.finish(MLFLOW_FINISHED, summary=summary)
    record.status(STATUS_FINISHED, val_loss=summary["val_loss"], val_ppl=summary["val_ppl"],
                  val_acc=summary["val_acc"])
    if record.main and HydraConfig.get().mode != RunMode.MULTIRUN:  # a sweep's table says it all
        console.show(closing_lines(record))
    return summary["val_loss"]


def resume_command(hydra_cfg: Any) -> str:
    """The command that continues this run: the one typed, pinned to this run's folder (a
    sweep: its folder), where resume=auto finds the checkpoint and the MLflow run."""
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    folder = (f"hydra.sweep.dir={hydra_cfg.sweep.dir}" if multirun else f"hydra.run.dir={hydra_cfg.runtime.output_dir}")
    return typed_command(folder)


def typed_command(folder: Optional[str] = None) -> str:
    """The command as typed (under torchrun, with its launcher), its folder replaced by
    `folder` when one is given."""
    typed = [arg for arg in sys.argv[1:] if not arg.startswith(("hydra.run.dir=", "hydra.sweep.dir="))]
    return " ".join([launcher_prefix(), *map(shlex.quote, typed), *([shlex.quote(folder)] if folder else [])])


def launcher_prefix() -> str:
    """`python -m llm_sweep`, or the torchrun line that started this process's group."""
    environ = os.environ
    if "TORCHELASTIC_RUN_ID" not in environ:
        return "python -m llm_sweep"
    per_node = int(environ.get("LOCAL_WORLD_SIZE", "1"))
    nodes = int(environ.get("WORLD_SIZE", "1")) // max(per_node, 1)
    if nodes > 1:  # its rendezvous options are the user's: say where they go
        return f"torchrun <your rendezvous options> --nnodes={nodes} --nproc_per_node={per_node} -m llm_sweep"
    return f"torchrun --nproc_per_node={per_node} -m llm_sweep"


def closing_lines(record: JobRecord) -> str:
    """Where a finished single run is, how to see it in MLflow, and the command that runs it
    again (a new folder: this one is finished and would be skipped)."""
    try:
        folder = record.run_dir.resolve().relative_to(Path.cwd())
    except ValueError:  # outside the working directory: its absolute path
        folder = record.run_dir.resolve()
    where = record.tracker.where() if record.tracker is not None else None
    return "\n".join([f"run folder {folder}/ (summary.json, metrics.jsonl, checkpoints/)",
                      f"MLflow     {where}" if where else "MLflow     not tracked (tracking=none)",
                      f"run again  {typed_command()}"])


def pruning_sinks(stop: StopRequest) -> list:
    """The Optuna pruning reporter when this job is a trial of the Optuna sweeper."""
    # after validation: a bad value fails before torch and MLflow load
    from hydra_plugins.llm_sweep_optuna.pruning import OptunaPruningReporter

    reporter = OptunaPruningReporter.from_env(stop)
    return [reporter] if reporter is not None else []


def _stopped(record: JobRecord, status: str, reason: str) -> None:
    """A run that ended early on request: KILLED in MLflow, `status` in the status file."""
    if record.tracker is not None:
        record.tracker.finish(MLFLOW_KILLED, error=reason)
    record.status(status, error=reason)


def one_line(exc: BaseException, with_type: bool = False) -> str:
    """The error as one line: a user error's own message (with its type if asked), else
    its type and first line."""
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    if isinstance(exc, LlmSweepError) and not with_type:
        return first
    return f"{type(exc).__name__}: {first}".rstrip(": ")


def _failed(cfg: DictConfig, record: JobRecord, exc: Exception, keep_going: bool) -> float:
    """Record a failure everywhere the job is seen. In a sweep, return NaN so the other jobs go
    on; a single run exits 2 with one line for a user error, 1 with one line when another
    process of the run died, and re-raises a bug."""
    message = one_line(exc)
    _record_failure(record, message, refused=isinstance(exc, RunDirTaken))
    if record.tracker is not None:
        record.tracker.finish(MLFLOW_FAILED, error=one_line(exc, with_type=True))
    elif keep_going and record.main:
        _track_failed_job(cfg, record, one_line(exc, with_type=True))
    if keep_going:
        console.error(message)
        if not isinstance(exc, LlmSweepError):
            traceback.print_exception(exc)
        return math.nan
    if isinstance(exc, PeerLost):
        console.error(message)
        sys.exit(1)
    if isinstance(exc, LlmSweepError):
        exit_with_error(exc)
    raise exc


def _record_failure(record: JobRecord, message: str, refused: bool) -> None:
    """Write the failure to the status file (a refused job: to its own file). On a full disk
    that write fails too: one warning line, and the error itself is still reported."""
    try:
        if refused:
            if record.main:
                write_json(Path(record.run_dir) / REFUSED_FILE, {"status": STATUS_FAILED, "error": message})
        else:
            record.status(STATUS_FAILED, error=message)
    except DiskFull as exc:
        console.warn(f"the failure is not recorded: {exc}")


def _track_failed_job(cfg: DictConfig, record: JobRecord, message: str) -> None:
    """A sweep's job that failed before its run was tracked still shows in MLflow, FAILED."""
    # after validation: a bad value fails before torch and MLflow load
    from llm_sweep.tracking.failed import record_failed_job

    record_failed_job(cfg, record.run_dir, message)
