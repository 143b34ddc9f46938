"""A training run as the reports see it, whether read from MLflow (report/runs.py) or from
a runs.csv (report/tables.py): its row, its validation curve, the params a row is made of,
and `config_key`, which says which runs are seeds of one config. MLflow-free, so a runs.csv
can be read (the designer, refits of committed results) without it."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Optional

from llm_sweep.core.budget import NULLS
from llm_sweep.core.config import LR_PARAM, config_param
from llm_sweep.core.model_config import SP, parametrization_label
from llm_sweep.core.run_record import MLFLOW_FINISHED, NON_EMBEDDING_PARAMS, PARAMS, TOKENS_PER_STEP

# The params that decide a run's result; runs equal in all of them but the seed are
# repeats of one config, and their spread is the noise level.
RESULT_PARAM_PREFIXES = ("model.", "optim.", "schedule.", "batch.", "budget.", "data.name", "data.tokenizer")
# The params every row is made of (model.head_dim stands in for an unset model.n_head).
MODEL_NAME, ARCH, N_LAYER, N_EMBD, N_HEAD, HEAD_DIM, OPTIMIZER, SEED = map(config_param, (
    "model.name", "model.arch", "model.n_layer", "model.n_embd", "model.n_head", "model.head_dim",
    "optim.name", "seed"))
# Optional: runs logged before parametrizations existed were `sp`.
PARAMETRIZATION, BASE_WIDTH, BASE_DEPTH, BASE_TUNED_BY = map(config_param, (
    "model.parametrization", "model.base_width", "model.base_depth", "model.base_tuned_by"))
REQUIRED_PARAMS = (PARAMS, NON_EMBEDDING_PARAMS, TOKENS_PER_STEP, MODEL_NAME, ARCH, N_LAYER, N_EMBD,
                   N_HEAD, HEAD_DIM, OPTIMIZER, LR_PARAM, SEED)

ConfigKey = tuple[tuple[str, str], ...]


def config_key(params: Mapping[str, str]) -> ConfigKey:
    """The (param, value) pairs of `params` that decide a run's result, sorted: equal for
    the seeds of one config and only for them. A param logged as null counts as absent, so
    a run logged before a key with a null default existed (say model.base_tuned_by) is a
    seed of the same config as one logged after."""
    return tuple(sorted((key, value) for key, value in params.items()
                        if key.startswith(RESULT_PARAM_PREFIXES) and value not in NULLS))


@dataclass(frozen=True)
class ValPoint:
    """One evaluation: the step, the tokens and wall-clock seconds spent by then, the loss."""

    step: int
    tokens: float
    elapsed_s: float
    loss: float


@dataclass(frozen=True)
class RunRow:
    run_id: str
    name: str
    experiment: str
    status: str  # MLflow's: FINISHED, FAILED, KILLED, RUNNING
    preset: str
    arch: str
    n_layer: int
    n_embd: int
    n_head: int
    params: int
    non_embedding_params: int
    optimizer: str
    lr: float
    budget: str
    seed: Optional[int]
    tokens: Optional[float] = None
    tokens_per_param: Optional[float] = None
    tokens_per_s: Optional[float] = None  # median of the logged windows
    mfu: Optional[float] = None  # median of the logged windows
    val_loss: Optional[float] = None
    val_ppl: Optional[float] = None
    val_acc: Optional[float] = None
    flops_budget: Optional[float] = None  # budget.flops, when the run had a FLOP budget
    flops: Optional[float] = None  # training FLOPs spent: flops_per_token x tokens, as MFU counts them
    parametrization: str = SP  # model.parametrization: sp, mup or completep
    base_width: Optional[int] = None  # the proxy shape mup/completep transfer from
    base_depth: Optional[int] = None
    base_tuned_by: Optional[str] = None  # the study that tuned the base (model.base_tuned_by)
    curve: tuple[ValPoint, ...] = ()
    config_key: ConfigKey = field(default=(), repr=False)  # config_key() of the run's params

    @property
    def tokens_per_non_embedding_param(self) -> Optional[float]:
        return None if self.tokens is None else self.tokens / self.non_embedding_params

    @property
    def transfer(self) -> str:
        """How the learning rate follows the shape: `sp`, `mup (base width 64)`, ..."""
        return parametrization_label(self)

    @property
    def finished(self) -> bool:
        return self.status == MLFLOW_FINISHED and self.val_loss is not None

    @property
    def shape(self) -> tuple[str, int, int, int]:
        return self.arch, self.n_layer, self.n_embd, self.n_head


def by_seed(runs: Iterable[RunRow]) -> list[list[RunRow]]:
    """The runs of one config grouped by seed, in first-seen order: the one rerun policy.
    A rerun of a seed is not a new draw of the noise, so every statistic takes one value
    per group (their mean); a run without a seed is a group of its own."""
    groups: dict[object, list[RunRow]] = {}
    for run in runs:
        groups.setdefault(run.run_id if run.seed is None else run.seed, []).append(run)
    return list(groups.values())
