"""What each model preset can see in a time budget: tokens, tokens/param, compute.

A throughput source maps presets to tokens/s: one rate for all, an MFU on a known peak
(tokens/s = MFU x peak / FLOPs per token), the best mode of a bench.json, or a probe.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from omegaconf import OmegaConf

from llm_sweep.core.config import CONF_DIR
from llm_sweep.core.errors import ConfigError
from llm_sweep.core.model_config import ModelConfig, parametrization_label, with_vocab_size
from llm_sweep.core.references import CHINCHILLA_TOKENS_PER_PARAM, SEED_TOKENS_PER_PARAM
from llm_sweep.core.size import flops_per_token, param_count
from llm_sweep.report.tables import markdown_table, ratio, si
from llm_sweep.training.metrics import tokens_per_s_at_mfu

MODEL_PRESETS = CONF_DIR / "model"
# The default throughput source of plan and of a sweep's dry run: an MFU on a peak.
DEFAULT_MFU = 0.36  # the seed run: wide3 at ~100k tokens/s on one A100
DEFAULT_PEAK_FLOPS = 312e12  # A100 dense bf16


@dataclass(frozen=True)
class PresetCost:
    name: str
    config: ModelConfig
    params: int
    non_embedding_params: int
    flops_per_token: int  # training (forward + backward) at the planned seq_len


@dataclass(frozen=True)
class PlanRow:
    preset: PresetCost
    tokens_per_s: Optional[float]  # None: no throughput for it (skipped by the probe)
    budget_s: float
    note: str = ""

    @property
    def tokens(self) -> Optional[float]:
        return None if self.tokens_per_s is None else self.tokens_per_s * self.budget_s

    @property
    def tokens_per_param(self) -> Optional[float]:
        return None if self.tokens is None else self.tokens / self.preset.params

    @property
    def tokens_per_non_embedding_param(self) -> Optional[float]:
        return None if self.tokens is None else self.tokens / self.preset.non_embedding_params

    @property
    def compute_flops(self) -> Optional[float]:
        """6 N D, the usual estimate of training compute (N: all parameters)."""
        return None if self.tokens is None else 6 * self.preset.params * self.tokens


def load_presets(names: Optional[Sequence[str]] = None, folder: Path = MODEL_PRESETS) -> list[ModelConfig]:
    """The model presets in conf/model/ (all, or those named), as ModelConfigs."""
    files = {path.stem: path for path in sorted(folder.glob("*.yaml"))}
    unknown = [name for name in names or () if name not in files]
    if unknown:
        raise ConfigError(f"--presets: no preset {', '.join(unknown)}; known: {', '.join(files)}")
    presets = []
    for name in names or files:
        values = OmegaConf.load(files[name]).model  # presets are `_global_`: keys under model:
        preset = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ModelConfig), values))
        presets.append(with_vocab_size(preset))  # GPT-2's: the presets train on gpt2 tokens
    return presets


def preset_cost(config: ModelConfig, seq_len: int) -> PresetCost:
    return PresetCost(config.name, config, param_count(config), param_count(config, non_embedding=True),
                      flops_per_token(config, seq_len))


def mfu_throughput(costs: Sequence[PresetCost], mfu: float, peak_flops: float) -> dict[str, float]:
    return {cost.name: tokens_per_s_at_mfu(mfu, cost.flops_per_token, peak_flops) for cost in costs}


def plan_rows(costs: Sequence[PresetCost], tokens_per_s: dict[str, float], budget_s: float,
              seq_len: int, notes: Optional[dict[str, str]] = None) -> list[PlanRow]:
    rows = []
    for cost in costs:
        note = (notes or {}).get(cost.name, "")
        if seq_len > cost.config.max_seq_len:
            note = note or f"seq_len {seq_len} > max_seq_len {cost.config.max_seq_len}"
        rows.append(PlanRow(cost, tokens_per_s.get(cost.name), budget_s, note))
    return rows


def nearest(rows: Sequence[PlanRow], tokens_per_param: float) -> Optional[PlanRow]:
    """The row closest on a log scale (a factor of 2 off counts the same either way)."""
    known = [row for row in rows if row.tokens_per_param]
    return min(known, key=lambda row: abs(math.log(row.tokens_per_param / tokens_per_param)), default=None)


def _optional(value: Optional[float], text: Callable[[float], str]) -> str:
    return "-" if value is None else text(value)


def format_plan(rows: Sequence[PlanRow], header: str) -> str:
    """The header line and a Markdown table, one row per preset."""
    marks: dict[str, list[str]] = {}
    targets = ((CHINCHILLA_TOKENS_PER_PARAM, "~20 (Chinchilla)"), (SEED_TOKENS_PER_PARAM, "~6 (seed)"))
    for target, label in targets:
        row = nearest(rows, target)
        if row is not None:
            marks.setdefault(row.preset.name, []).append(f"nearest {label}")
    columns: list[tuple[str, bool, Callable[[PlanRow], str]]] = [  # header, right-aligned, cell
        ("preset", False, lambda r: r.preset.name),
        ("arch", False, lambda r: r.preset.config.arch),
        ("parametrization", False, lambda r: parametrization_label(r.preset.config)),
        ("n_layer x n_embd", False, lambda r: f"{r.preset.config.n_layer} x {r.preset.config.n_embd}"),
        ("params", True, lambda r: si(r.preset.params)),
        ("non-emb params", True, lambda r: si(r.preset.non_embedding_params)),
        ("FLOPs/token", True, lambda r: si(r.preset.flops_per_token)),
        ("tokens/s", True, lambda r: _optional(r.tokens_per_s, lambda v: f"{v:,.0f}")),
        ("tokens in budget", True, lambda r: _optional(r.tokens, si)),
        ("tokens/param", True, lambda r: _optional(r.tokens_per_param, ratio)),
        ("tokens/non-emb param", True, lambda r: _optional(r.tokens_per_non_embedding_param, ratio)),
        ("compute 6ND (FLOPs)", True, lambda r: _optional(r.compute_flops, lambda v: f"{v:.3g}")),
        ("mark", False, lambda r: ", ".join(marks.get(r.preset.name, []))),
        ("note", False, lambda r: r.note),
    ]
    table = markdown_table([c[0] for c in columns], [[c[2](row) for c in columns] for row in rows],
                           [c[1] for c in columns])
    return f"{header}\n\n{table}"
