"""What a tracked run records about itself: its name, params and tags.

Plain functions of the config and the Hydra job, without MLflow, so they are cheap to
test. Every string that leaves the process goes through `redact` first.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import socket
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, is_dataclass
from pathlib import Path
from typing import Any, Optional

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from llm_sweep.core.config import RunConfig
from llm_sweep.core.run_record import FLOPS_PER_TOKEN, NON_EMBEDDING_PARAMS, PARAMS, TOKENS_PER_STEP
from llm_sweep.core.size import flops_per_token, param_count
from llm_sweep.tracking.redact import is_secret_key, redact

MAX_PARAM_CHARS = 6000  # MLflow's limit on a param value
MAX_TAG_CHARS = 8000  # MLflow's limit on a tag value
MAX_RUN_NAME_CHARS = 200
DEFAULT_JOB_NAME = "llm_sweep"
PACKAGE_DIR = Path(__file__).resolve().parent.parent
QUOTES = "'\""

# Override keys that say where or how a run is recorded, not what it trains.
_UNNAMED_PREFIXES = ("hydra", "tracking", "data.cache_dir", "data.num_proc", "resume", "eval",
                     "checkpoint", "compile", "loss_chunks")
# already in the name as model.name (a shape names itself there too) and optim.name
_NAMED_BY_PRESET = ("model", "optim", "shape")
_TOP_LEVEL_VALUES = frozenset(key for key, value in vars(RunConfig()).items()
                              if not is_dataclass(value))  # seed, device, dtype, ...


@dataclass(frozen=True)
class JobContext:
    """The Hydra job a run belongs to; the defaults describe a run outside Hydra."""

    name: str = DEFAULT_JOB_NAME
    cwd: Path = field(default_factory=Path.cwd)  # where the command was started
    overrides: tuple[str, ...] = ()  # the task overrides, as given
    sweep_dir: Optional[Path] = None  # absolute; multiruns only
    job_num: Optional[int] = None  # multiruns only
    sweep_name: Optional[str] = None  # the `sweep` group's choice, for named sweeps

    @classmethod
    def current(cls) -> JobContext:
        if not HydraConfig.initialized():
            return cls()
        hydra = HydraConfig.get()
        cwd = Path(hydra.runtime.cwd)
        multirun = hydra.mode == RunMode.MULTIRUN
        return cls(
            name=hydra.job.name, cwd=cwd, overrides=tuple(hydra.overrides.task),
            # Relative to the start directory, as Hydra resolves the job's output dir.
            sweep_dir=cwd / hydra.sweep.dir if multirun else None,
            job_num=hydra.job.num if multirun else None,
            sweep_name=hydra.runtime.choices.get("sweep"),
        )


def experiment_name(configured: Optional[str], job_name: str, sweep_name: Optional[str],
                    multirun: bool) -> str:
    """tracking.experiment, else a named sweep's name (multiruns), else the Hydra job name."""
    if configured:
        return configured
    if multirun and sweep_name:
        return sweep_name
    return job_name


def run_name(run: RunConfig, overrides: Sequence[str], fixed: Sequence[str] = ()) -> str:
    """`wide3-adamw-lr0.00125`: the presets, then the overridden values that vary.

    `fixed` lists overrides shared by every job of a sweep; they are left out so the
    names of a sweep's runs differ exactly where the runs do.
    """
    if run.tracking.run_name:
        return run.tracking.run_name
    parts = [run.model.name, run.optim.name]
    for override in overrides:
        if override in fixed or "=" not in override or override.startswith("~"):
            continue
        key, value = override.lstrip("+").split("=", 1)
        if (key.startswith(_UNNAMED_PREFIXES) or key in _NAMED_BY_PRESET
                or is_secret_key(key.rsplit(".", 1)[-1])):
            continue
        # `optim.lr=0.002` -> lr0.002, `seed=3` -> seed3, a group choice `schedule=wsd` -> wsd
        leaf = key.rsplit(".", 1)[-1] if "." in key or key in _TOP_LEVEL_VALUES else ""
        parts.append(f"{leaf}{value.strip(QUOTES)}")
    return redact("-".join(parts))[:MAX_RUN_NAME_CHARS]


def flatten_params(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Dotted keys to param strings (`model.n_embd` -> "256"), redacted and truncated."""
    params: dict[str, str] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            params.update(flatten_params(value, f"{dotted}."))
            continue
        if is_secret_key(str(key)) and value is not None:
            text = "***"
        elif value is None:
            text = "null"
        elif isinstance(value, bool):
            text = "true" if value else "false"  # as typed on the command line
        elif isinstance(value, (list, tuple)):
            text = json.dumps(list(value), default=str)
        else:
            text = str(value)
        params[dotted] = redact(text)[:MAX_PARAM_CHARS]
    return params


def derived_params(run: RunConfig) -> dict[str, str]:
    """Model size and cost, from the model config alone."""
    return {
        PARAMS: str(param_count(run.model)),
        NON_EMBEDDING_PARAMS: str(param_count(run.model, non_embedding=True)),
        FLOPS_PER_TOKEN: str(flops_per_token(run.model, run.batch.seq_len)),
        TOKENS_PER_STEP: str(run.batch.tokens_per_step),
    }


def git_tags(path: Path = PACKAGE_DIR) -> dict[str, str]:
    """The commit and dirty flag of the git checkout that holds `path` (by default this
    package's code); {} outside one."""
    def git(*args: str) -> Optional[str]:
        try:
            done = subprocess.run(["git", "-C", str(path), *args], capture_output=True,
                                  text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    # An installed copy inside some other checkout (a venv in a repo) is not that repo's code.
    if commit is None or git("ls-files", "--error-unmatch", "__init__.py") is None:
        return {}
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": commit, "git_dirty": str(bool(dirty)).lower()}


def run_tags(run: RunConfig, job: JobContext, config_hash: str) -> dict[str, str]:
    """Where and from which code a run ran (the device is tagged when training starts)."""
    tags = {
        **git_tags(),
        "host": socket.gethostname(),
        "torch_version": importlib.metadata.version("torch"),
        "overrides": " ".join(job.overrides),
        "config_hash": config_hash,
        # the run's description in the MLflow UI
        "mlflow.note.content": (f"{run.model.name}: {run.model.n_layer} layers x {run.model.n_embd}, "
                                f"{run.optim.name} lr {run.optim.lr:g}, {run.data.name} read as "
                                f"{run.data.tokenizer}; overrides: {' '.join(job.overrides) or 'none'}"),
    }
    if job.sweep_dir is not None:
        tags["sweep_id"] = str(job.sweep_dir)
        tags["job_index"] = str(job.job_num)
    for env, tag in (("SLURM_JOB_ID", "slurm_job_id"), ("SLURM_ARRAY_JOB_ID", "slurm_array_job_id"),
                     ("SLURM_ARRAY_TASK_ID", "slurm_array_task_id")):
        if os.environ.get(env):
            tags[tag] = os.environ[env]
    return {key: redact(value)[:MAX_TAG_CHARS] for key, value in tags.items()}
