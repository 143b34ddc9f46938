"""Typed configuration: dataclass schemas in Hydra's ConfigStore, YAML presets in conf/.

Each group's presets list `_self_` after a schema default (e.g. `model_schema`),
so a mistyped key or a wrongly typed value fails at composition, naming the key.
`load_config` converts the composed DictConfig once into plain dataclasses and
checks every key against its rule (see llm_sweep.core.rules): each field's allowed values
sit in its metadata, rules spanning fields in the schema's `cross_field_rules`.
Everything below the entry point takes those checked dataclasses.
"""
from __future__ import annotations

import dataclasses
import difflib
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from llm_sweep.core.budget import BudgetConfig, is_positive_duration, parse_duration
from llm_sweep.core.coordcheck_config import CoordcheckConfig
from llm_sweep.core.data_config import DataConfig
from llm_sweep.core.errors import ConfigError
from llm_sweep.core.model_config import ModelConfig, with_vocab_size
from llm_sweep.core.optim_config import OptimConfig, ScheduleConfig
from llm_sweep.core.rules import check, rule


def _shipped(folder: str) -> Path:
    """conf/ or sweeps/: inside the installed package (a wheel ships them as package data),
    else at the top of the source tree (an editable install or a checkout)."""
    package = Path(__file__).resolve().parent.parent  # llm_sweep/
    installed = package / folder
    return installed if installed.is_dir() else package.parent / folder


CONF_DIR = _shipped("conf")
SWEEPS_DIR = _shipped("sweeps")
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "bf16", "fp32")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
BENCH_MODES = ("eager-fp32", "eager-bf16", "compile-fp32", "compile-bf16")
TRACKING_BACKENDS = ("mlflow", "none")
SEED = rule(ge=0, lt=2**32)  # numpy's seeding range


@dataclass
class BatchConfig:
    micro_batch_size: int = field(default=16, metadata=rule(ge=1))
    grad_accum: int = field(default=1, metadata=rule(ge=1))
    seq_len: int = field(default=256, metadata=rule(ge=1))

    @property
    def tokens_per_step(self) -> int:
        return self.micro_batch_size * self.grad_accum * self.seq_len


@dataclass
class EvalConfig:
    interval: int = field(default=100, metadata=rule(ge=0))  # optimizer steps between evaluations; 0: none
    batches: int = field(default=24, metadata=rule(ge=1))  # micro-batches per periodic evaluation
    # None: the whole validation split
    final_batches: Optional[int] = field(default=None, metadata=rule(ge=1))


@dataclass
class CheckpointConfig:
    # Optimizer steps between checkpoints; 0: only at the end.
    interval: int = field(default=0, metadata=rule(ge=0))
    # Save the trained model at the end (false: a measurement run that keeps no weights).
    final: bool = True


@dataclass
class TrackingConfig:
    backend: str = field(default="mlflow", metadata=rule(choices=TRACKING_BACKENDS))
    uri: Optional[str] = None  # None: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db
    experiment: Optional[str] = None  # None: the Hydra job name or the sweep's name
    run_name: Optional[str] = None  # None: derived from the overrides
    log_interval: int = field(default=10, metadata=rule(ge=1))  # optimizer steps between train metric logs
    log_checkpoint: bool = False
    # MLflow's system metrics (CPU, memory, disk, network; GPU utilization and memory of the
    # job's own GPUs with nvidia-ml-py), sampled on rank 0 every 10 s.
    system_metrics: bool = True


@dataclass
class BenchConfig:
    modes: List[str] = field(default_factory=lambda: ["eager-fp32", "compile-bf16"],
                             metadata=rule(choices=BENCH_MODES, min_items=1))
    warmup_steps: int = field(default=3, metadata=rule(ge=0))
    steps: int = field(default=10, metadata=rule(ge=1))


@dataclass
class SweepConfig:
    fail_fast: bool = False
    # Print the sweep's jobs, the compute and expected time of each, and launch nothing.
    dry_run: bool = False
    # Refuse, before anything launches, a sweep expected to need more GPU-hours than this.
    max_gpu_hours: Optional[float] = field(default=None, metadata=rule(gt=0))
    # The throughput both assume: a bench.json of `python -m llm_sweep.bench` (its fastest
    # mode's MFU and peak); None: plan's default MFU on `peak_flops` (None: an A100's).
    bench: Optional[str] = field(default=None, metadata=rule(
        test=lambda path: Path(path).is_file(), expect="an existing bench.json file"))
    # Repeat every job of a basic-sweeper sweep with seed, seed+1, ..., seed+seeds-1
    # (llm_sweep.sweeping.seeds); 1: each job once, at `seed`.
    seeds: int = field(default=1, metadata=rule(ge=1))


@dataclass
class DistributedConfig:
    """One run over several processes (torchrun, or a submitit job of several tasks)."""

    # How long a collective waits for a rank before the others give up with an error: a
    # rank that died ends the run within this, instead of at the job's time limit.
    timeout: str = field(default="10m", metadata=rule(
        test=is_positive_duration, expect="a duration > 0, e.g. 10m, 90s or a number of seconds"))
    # local_parallel on a multi-GPU machine: the GPUs each concurrently running trial gets
    # (one per task when hydra.launcher.tasks_per_node > 1).
    gpus_per_trial: int = field(default=1, metadata=rule(ge=1))
    # Trials that share one GPU (local_parallel, slurm_packed): each gets 1/N of its memory
    # and of the job's CPU threads (llm_sweep.sweeping.packing). 1: a GPU per trial.
    trials_per_gpu: int = field(default=1, metadata=rule(ge=1, le=64))
    # DDP's gradient bucket size: each bucket's all-reduce overlaps the rest of the backward
    # (in a compiled step, dynamo splits the graph at these boundaries). At least DDP's first
    # bucket, 1 MB.
    bucket_cap_mb: float = field(default=25.0, metadata=rule(ge=1))

    @property
    def timeout_s(self) -> float:
        return parse_duration(self.timeout, "distributed.timeout")


def _seq_len_fits(run: "RunConfig", p: str) -> Optional[str]:
    if run.batch.seq_len > run.model.max_seq_len:
        return f"{p}batch.seq_len={run.batch.seq_len} exceeds {p}model.max_seq_len={run.model.max_seq_len}"
    return None


def _packs_one_gpu_trials(run: "RunConfig", p: str) -> Optional[str]:
    d = run.distributed
    if d.trials_per_gpu > 1 and d.gpus_per_trial > 1:
        return (f"{p}distributed.trials_per_gpu={d.trials_per_gpu} packs one-GPU trials, but "
                f"{p}distributed.gpus_per_trial={d.gpus_per_trial}; set one of them to 1")
    return None


def _vocab_holds_tokens(run: "RunConfig", p: str) -> Optional[str]:
    if run.model.vocab_size is not None and run.model.vocab_size < run.data.vocab_size:
        return (f"{p}model.vocab_size={run.model.vocab_size} is not allowed: must be >= "
                f"{run.data.vocab_size}, the tokenizer's vocabulary")
    return None


def _is_checkpoint_setting(value: str) -> bool:
    return value in ("auto", "never") or Path(value).exists()


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
    coordcheck: CoordcheckConfig = field(default_factory=CoordcheckConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    seed: int = field(default=1337, metadata=SEED)
    device: str = field(default="auto", metadata=rule(choices=DEVICES))
    # auto: the faster on this machine: bf16 on CUDA, on a CPU the faster measured matmul
    dtype: str = field(default="auto", metadata=rule(choices=DTYPES))
    # auto: torch.compile where it can generate code (CUDA; a CPU with a C++ compiler)
    compile: Any = field(default="auto", metadata=rule(
        test=lambda value: value == "auto" or isinstance(value, bool), expect="auto, true or false"))
    # torch.compile mode, e.g. max-autotune-no-cudagraphs
    compile_mode: Optional[str] = field(default=None, metadata=rule(choices=COMPILE_MODES))
    resume: str = field(default="auto", metadata=rule(
        test=_is_checkpoint_setting, expect="auto, never or an existing checkpoint path"))
    peak_flops: Optional[float] = field(default=None, metadata=rule(gt=0))  # None: from the device
    # LM head + loss: 0 = plain cross-entropy on the whole logits, N = the fused head in N
    # chunks of rows (never holding the logits whole), None = what is fastest on the device.
    loss_chunks: Optional[int] = field(default=None, metadata=rule(ge=0))

    cross_field_rules = (_seq_len_fits, _vocab_holds_tokens, _packs_one_gpu_trials)  # not a field: no annotation


def gpu_count() -> int:
    """GPUs this machine shows (`${gpu_count:}` in launcher presets; 0 without CUDA)."""
    import torch  # only when a launcher preset asks: the core imports no torch

    return torch.cuda.device_count()


def register_configs() -> None:
    """Store the schemas and the named sweeps in Hydra's ConfigStore (once per process: a
    second call finds them there and returns)."""
    OmegaConf.register_new_resolver("gpu_count", gpu_count, replace=True)
    cs = ConfigStore.instance()
    if "run_schema.yaml" in cs.repo:
        return
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


def load_config(cfg: DictConfig | RunConfig) -> RunConfig:
    """The typed, validated run configuration from a composed Hydra config; an unset
    model.vocab_size becomes data.tokenizer's (padded), so everything below sees an int."""
    if isinstance(cfg, DictConfig):
        keys = run_keys(cfg)
        refuse_unknown_keys(keys)
        run = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(RunConfig), keys))
    else:
        run = cfg
    validate(run)
    return replace(run, model=with_vocab_size(run.model, run.data.vocab_size))


def unknown_key(key: str) -> Optional[str]:
    """Why dotted `key` is not a config key, naming the nearest real one; None when it is one."""
    schema: Any = RunConfig
    prefix = ""
    for part in key.split("."):
        fields = {f.name: f for f in dataclasses.fields(schema)}
        if part not in fields:
            near = difflib.get_close_matches(part, fields, n=1)
            hint = f"did you mean {prefix}{near[0]}? " if near else ""
            return (f"{prefix}{part} is not a config key: {hint}({prefix.rstrip('.') or 'the top level'} has "
                    f"{', '.join(fields)})")
        schema, prefix = _group_schema(fields[part]), f"{prefix}{part}."
        if schema is None:
            return None
    return None


def refuse_unknown_keys(node: DictConfig, schema: Any = None, prefix: str = "") -> None:
    """A key the schema does not have (`+model.n_emb=256` adds one) fails in one line naming
    the nearest real key, instead of being dropped while the run trains without it."""
    fields = {f.name: f for f in dataclasses.fields(schema or RunConfig)}
    for key in node.keys():
        if key not in fields:
            raise ConfigError(unknown_key(f"{prefix}{key}"))
        group = _group_schema(fields[key])
        if group is not None and isinstance(node[key], DictConfig):
            refuse_unknown_keys(node[key], group, f"{prefix}{key}.")


def run_keys(cfg: DictConfig) -> DictConfig:
    """The composed config less Hydra's own and the other commands' top-level keys."""
    keys = [k for k in cfg.keys() if k in RunConfig.__dataclass_fields__]
    return OmegaConf.masked_copy(cfg, keys)


def validate(run: RunConfig) -> None:
    """Every key against its rule, then the cross-field rules; a failure is one ConfigError line."""
    check(run)
    head_size = run.model.n_embd // run.model.heads
    if head_size % 64:
        warnings.warn(f"model head size n_embd/n_head={head_size} is not a multiple of 64; "
                      "tensor cores run best at 64 or 128", stacklevel=2)


def config_param(key: str) -> str:
    """The param a tracked run logs for config key `key` (its dotted path, `model.n_embd`).
    Checked against the schema: a key renamed there fails here, at import, instead of as a
    KeyError in a report."""
    schema: Any = RunConfig
    for part in key.split("."):
        fields = {f.name: f for f in dataclasses.fields(schema)} if schema is not None else {}
        if part not in fields:
            raise KeyError(f"{key} is not a config key")
        schema = _group_schema(fields[part])
    return key


def _group_schema(field: dataclasses.Field) -> Any:
    """The dataclass of a config group field (`model`), None for a leaf (`seed`)."""
    default = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
    return type(default) if dataclasses.is_dataclass(default) else None


# The learning rate's param: what the reports read a run's lr from and what its lr curves
# vary (not the logged metric `lr`, the scheduled value at each step).
LR_PARAM = config_param("optim.lr")
