"""Typed configuration: dataclass schemas in Hydra's ConfigStore, YAML presets in conf/.

Each group's presets list `_self_` after a schema default (e.g. `model_schema`),
so a mistyped key or a wrongly typed value fails at composition, naming the key.
`load_config` converts the composed DictConfig once into plain dataclasses and
runs the cross-field checks; everything below the entry point takes those.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from llm_sweep.data.config import DATASETS, DataConfig
from llm_sweep.errors import ConfigError
from llm_sweep.models.config import ARCHS, ModelConfig
from llm_sweep.optim.config import OPTIMIZERS, SCHEDULES, OptimConfig, ScheduleConfig

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
SWEEPS_DIR = CONF_DIR.parent / "sweeps"
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "bf16", "fp32")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass
class BatchConfig:
    micro_batch_size: int = 16
    grad_accum: int = 1
    seq_len: int = 256

    @property
    def tokens_per_step(self) -> int:
        return self.micro_batch_size * self.grad_accum * self.seq_len


@dataclass
class BudgetConfig:
    time: Optional[str] = None  # "3h", "90m", "45s" or seconds
    steps: Optional[int] = None
    tokens: Optional[int] = None
    count_compile: bool = False  # include compile warm-up in the time budget
    count_eval: bool = False  # include evaluation in the time budget

    @property
    def time_s(self) -> Optional[float]:
        return None if self.time is None else parse_duration(self.time)


@dataclass
class EvalConfig:
    interval: int = 100  # optimizer steps between evaluations; 0 disables
    batches: int = 24  # micro-batches per periodic evaluation
    final_batches: Optional[int] = None  # None: the full validation split


@dataclass
class CheckpointConfig:
    interval: int = 0  # optimizer steps between checkpoints; 0: only at the end


@dataclass
class TrackingConfig:
    backend: str = "mlflow"  # mlflow | none
    uri: Optional[str] = None  # None: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db
    experiment: Optional[str] = None  # None: the Hydra job name or the sweep's name
    run_name: Optional[str] = None  # None: derived from the overrides
    log_interval: int = 10  # optimizer steps between train metric logs
    log_checkpoint: bool = False


@dataclass
class BenchConfig:
    modes: List[str] = field(default_factory=lambda: ["eager-fp32", "compile-bf16"])
    warmup_steps: int = 3
    steps: int = 10


@dataclass
class SweepConfig:
    fail_fast: bool = False


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    batch: BatchConfig = field(default_factory=BatchConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    data: DataConfig = field(default_factory=DataConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    seed: int = 1337
    device: str = "auto"  # auto | cpu | cuda
    dtype: str = "auto"  # auto | bf16 | fp32 (auto: bf16 on CUDA and bf16-capable CPUs)
    compile: Optional[bool] = None  # None: on for CUDA, off for CPU
    compile_mode: Optional[str] = None  # torch.compile mode, e.g. max-autotune-no-cudagraphs
    resume: str = "auto"  # auto | never | a checkpoint path
    peak_flops: Optional[float] = None  # None: from the device (table or CPU probe)


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="run_schema", node=RunConfig)
    # Model presets are `_global_` (they bring their batch/budget/data), typed by run_schema.
    for group, node in [
        ("optim", OptimConfig), ("schedule", ScheduleConfig),
        ("batch", BatchConfig), ("budget", BudgetConfig), ("data", DataConfig),
        ("tracking", TrackingConfig),
    ]:
        cs.store(group=group, name=f"{group}_schema", node=node)
    # Named sweeps live in sweeps/ and are selected with `+sweep=<name>`.
    for path in sorted(SWEEPS_DIR.glob("*.yaml")):
        cs.store(group="sweep", name=path.stem, node=OmegaConf.load(path), package="_global_")


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> float:
    """Seconds from `3h`, `90m`, `45s`, `1.5h` or a plain number of seconds."""
    match = _DURATION.match(str(value))
    if not match:
        raise ConfigError(f"budget.time={value!r} is not a duration; use e.g. 3h, 90m, 45s or seconds")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def load_config(cfg: DictConfig | RunConfig) -> RunConfig:
    """The typed, validated run configuration from a composed Hydra config."""
    if isinstance(cfg, DictConfig):
        run = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(RunConfig), _run_keys(cfg)))
    else:
        run = cfg
    validate(run)
    return run


def _run_keys(cfg: DictConfig) -> DictConfig:
    keys = [k for k in cfg.keys() if k in RunConfig.__dataclass_fields__]
    return OmegaConf.masked_copy(cfg, keys)


def _choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}={value!r} is not one of {', '.join(allowed)}")


def _positive(key: str, value: Optional[float], allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if value is None or value <= 0:
        raise ConfigError(f"{key}={value!r} must be positive")


def validate(run: RunConfig) -> None:
    """Cross-field checks; each failure is one ConfigError line naming the key."""
    m, b = run.model, run.batch
    _choice("model.arch", m.arch, ARCHS)
    _choice("optim.name", run.optim.name, OPTIMIZERS)
    _choice("schedule.name", run.schedule.name, SCHEDULES)
    _choice("data.name", run.data.name, DATASETS)
    _choice("device", run.device, DEVICES)
    _choice("dtype", run.dtype, DTYPES)
    _choice("tracking.backend", run.tracking.backend, ("mlflow", "none"))
    if run.compile_mode is not None:
        _choice("compile_mode", run.compile_mode, COMPILE_MODES)
    for key in ("n_layer", "n_embd", "head_dim", "vocab_size", "max_seq_len"):
        _positive(f"model.{key}", getattr(m, key), allow_none=False)
    _positive("model.n_head", m.n_head)
    if m.n_embd % m.heads:
        raise ConfigError(f"model.n_embd={m.n_embd} is not divisible by model.n_head={m.heads}")
    head_dim = m.n_embd // m.heads
    if head_dim % 8:
        raise ConfigError(f"model head size n_embd/n_head={head_dim} must be a multiple of 8")
    if head_dim % 64:
        warnings.warn(f"model head size n_embd/n_head={head_dim} is not a multiple of 64; "
                      "tensor cores run best at 64 or 128", stacklevel=2)
    if m.arch == "llama" and head_dim % 2:
        raise ConfigError(f"model head size {head_dim} must be even for rotary embeddings")
    for key in ("micro_batch_size", "grad_accum", "seq_len"):
        _positive(f"batch.{key}", getattr(b, key), allow_none=False)
    if b.seq_len > m.max_seq_len:
        raise ConfigError(f"batch.seq_len={b.seq_len} exceeds model.max_seq_len={m.max_seq_len}")
    if run.budget.time_s is not None and run.budget.time_s <= 0:
        raise ConfigError(f"budget.time={run.budget.time} must be positive")
    _positive("budget.steps", run.budget.steps)
    _positive("budget.tokens", run.budget.tokens)
    if run.budget.time is None and run.budget.steps is None and run.budget.tokens is None:
        raise ConfigError("budget: set at least one of budget.time, budget.steps, budget.tokens")
    _positive("optim.lr", run.optim.lr, allow_none=False)
    _positive("optim.hessian_interval", run.optim.hessian_interval, allow_none=False)
    if not 0 <= run.schedule.warmup_frac < 1:
        raise ConfigError(f"schedule.warmup_frac={run.schedule.warmup_frac} must be in [0, 1)")
    sched = run.schedule
    if sched.name == "wsd" and not 0 <= sched.decay_frac <= 1 - sched.warmup_frac:
        raise ConfigError(f"schedule.decay_frac={sched.decay_frac} must be in "
                          f"[0, 1 - schedule.warmup_frac]")
    if run.eval.interval < 0 or run.eval.batches <= 0:
        raise ConfigError("eval.interval must be >= 0 and eval.batches > 0")
    if run.resume not in ("auto", "never") and not Path(run.resume).exists():
        raise ConfigError(f"resume={run.resume!r}: use auto, never or an existing checkpoint path")
