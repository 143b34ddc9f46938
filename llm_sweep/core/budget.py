"""The compute budget, its one home: the kinds (time, steps, tokens, FLOPs) and how they are
written (`BudgetConfig`, durations), what a run has spent (`Spent`), and `Budget`, which
training (progress, the binding kind), the sweep's dry run (the steps each kind allows),
plan and the reports (its label, from a run's logged params) all ask.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Optional

from llm_sweep.core.errors import ConfigError
from llm_sweep.core.rules import rule
from llm_sweep.core.run_record import FLOPS_PER_TOKEN

KINDS = ("time", "steps", "tokens", "flops")
NULLS = ("None", "null", "")  # how a param logged from None can read
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_LABEL_UNITS = {" steps": "steps", " tokens": "tokens", " FLOPs": "flops"}  # label(): a time has none


def parse_duration(value: Any, key: str = "budget.time") -> float:
    """Seconds from `3h`, `90m`, `45s`, `1.5h` or a plain number of seconds."""
    match = _DURATION.match(str(value))
    if not match:
        raise ConfigError(f"{key}={value!r} is not a duration; use e.g. 3h, 90m, 45s or seconds")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def is_positive_duration(value: str) -> bool:
    return _DURATION.match(str(value)) is not None and parse_duration(value) > 0


def _budget_set(b: "BudgetConfig", p: str) -> Optional[str]:
    if b.time is None and b.steps is None and b.tokens is None and b.flops is None:
        return f"budget: set at least one of {p}time, {p}steps, {p}tokens, {p}flops"
    return None


@dataclass
class BudgetConfig:
    time: Optional[str] = field(default=None, metadata=rule(  # "3h", "90m", "45s" or seconds
        test=is_positive_duration, expect="a duration > 0, e.g. 3h, 90m, 45s or a number of seconds"))
    steps: Optional[int] = field(default=None, metadata=rule(ge=1))
    tokens: Optional[int] = field(default=None, metadata=rule(ge=1))
    # Training FLOPs: flops_per_token(model, seq_len) x tokens, as MFU counts them (e.g. 2e12)
    flops: Optional[float] = field(default=None, metadata=rule(gt=0))
    count_compile: bool = False  # include compile warm-up in the time budget
    count_eval: bool = False  # include evaluation in the time budget

    cross_field_rules = (_budget_set,)  # not a field: no annotation

    @property
    def time_s(self) -> Optional[float]:
        return None if self.time is None else parse_duration(self.time)




@dataclass
class Spent:
    """Counters a run carries through checkpoints."""

    step: int = 0
    tokens: int = 0
    train_s: float = 0.0  # wall time of training steps, compile warm-up excluded
    compile_s: float = 0.0  # wall time of the first (compiling) step after each start
    compile_steps: int = 0
    eval_s: float = 0.0  # wall time of evaluations

    def to_dict(self) -> dict:
        return asdict(self)

    def add_step(self, tokens: int, seconds: float, compiling: bool) -> None:
        """Count one optimizer step; the time of a step that compiled goes to compile_s."""
        self.step += 1
        self.tokens += tokens
        if compiling:
            self.compile_s += seconds
            self.compile_steps += 1
        else:
            self.train_s += seconds


class Budget:
    """Progress in [0, 1] is the largest fraction spent of any budget that is set.

    A FLOP budget counts tokens x `flops_per_token` (models.size.flops_per_token, the
    count MFU uses), so it binds at a fixed token count and the schedule ends exactly there.
    """

    def __init__(self, cfg: BudgetConfig, flops_per_token: Optional[int] = None, *, strict: bool = True):
        if strict and cfg.flops is not None and not flops_per_token:
            raise ValueError("budget.flops needs the model's flops_per_token")
        self.cfg = cfg
        self.time_s = cfg.time_s
        self.flops_per_token = flops_per_token

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> "Budget":
        """The budget of a tracked run, from the params it logged (`budget.*`, `flops_per_token`)."""
        def given(key: str) -> Optional[str]:
            value = params.get(key, "None")
            return None if value in NULLS else value

        time, steps, tokens, flops = (given(f"budget.{kind}") for kind in KINDS)
        per_token = given(FLOPS_PER_TOKEN)
        cfg = BudgetConfig(time=time, steps=_int(steps), tokens=_int(tokens),
                           flops=None if flops is None else float(flops))
        # A run logged before flops_per_token was a param still has a label.
        return cls(cfg, None if per_token is None else int(float(per_token)), strict=False)

    def label(self) -> str:
        """`3h`, `200 steps`, `1000000 tokens`, `2e+12 FLOPs`, or several joined by ` / `."""
        cfg, parts = self.cfg, []
        if cfg.time is not None:
            parts.append(str(cfg.time))
        if cfg.steps is not None:
            parts.append(f"{cfg.steps} steps")
        if cfg.tokens is not None:
            parts.append(f"{cfg.tokens} tokens")
        if cfg.flops is not None:
            parts.append(f"{cfg.flops:.3g} FLOPs")
        return " / ".join(parts) or "none"

    @staticmethod
    def params_in_label(label: str) -> dict[str, str]:
        """The `budget.*` params a `label()` stands for: `8e+12 FLOPs / 3h` ->
        {"budget.flops": "8e+12", "budget.time": "3h"}. Only for a runs.csv written before it
        held a run's config and FLOP budget as columns; everything else reads the params."""
        params = {}
        for part in label.split(" / "):
            if part and part != "none":
                unit = next((unit for unit in _LABEL_UNITS if part.endswith(unit)), "")
                params[f"budget.{_LABEL_UNITS.get(unit, 'time')}"] = part[: len(part) - len(unit)]
        return params

    def steps_allowed(self, tokens_per_step: int, tokens_per_s: float) -> dict[str, float]:
        """Optimizer steps each budget that is set allows (training stops at the first step
        that reaches one); a time budget at `tokens_per_s`."""
        cfg, steps = self.cfg, {}
        if cfg.steps is not None:
            steps["steps"] = cfg.steps
        if cfg.tokens is not None:
            steps["tokens"] = math.ceil(cfg.tokens / tokens_per_step)
        if cfg.flops is not None:
            steps["flops"] = math.ceil(cfg.flops / (self._flops_per_token() * tokens_per_step))
        if self.time_s is not None:
            steps["time"] = self.time_s * tokens_per_s / tokens_per_step
        return steps

    def _flops_per_token(self) -> int:
        if not self.flops_per_token:
            raise ValueError("budget.flops needs the model's flops_per_token")
        return self.flops_per_token

    def elapsed_s(self, spent: Spent) -> float:
        """Seconds counted against `budget.time` (compile and eval only when asked)."""
        return (spent.train_s + spent.compile_s * self.cfg.count_compile
                + spent.eval_s * self.cfg.count_eval)

    def fractions(self, spent: Spent) -> dict[str, float]:
        fractions = {}
        if self.time_s is not None:
            fractions["time"] = self.elapsed_s(spent) / self.time_s
        if self.cfg.steps is not None:
            fractions["steps"] = spent.step / self.cfg.steps
        if self.cfg.tokens is not None:
            fractions["tokens"] = spent.tokens / self.cfg.tokens
        if self.cfg.flops is not None:
            fractions["flops"] = spent.tokens * self._flops_per_token() / self.cfg.flops
        return fractions

    def progress(self, spent: Spent) -> float:
        return min(1.0, max(self.fractions(spent).values()))

    def progress_after_step(self, spent: Spent, tokens_per_step: int, step_s: float) -> float:
        """Progress at the end of the coming step, so step 0 never trains at warmup's lr 0 and the
        last step lands on the schedule's end. `step_s` estimates the step's duration."""
        return self.progress(replace(spent, step=spent.step + 1, tokens=spent.tokens + tokens_per_step,
                                     train_s=spent.train_s + step_s))

    def binding(self, spent: Spent) -> str:
        """The budget that is furthest along (the one that will end the run)."""
        fractions = self.fractions(spent)
        return max(fractions, key=fractions.get)

    def done(self, spent: Spent) -> bool:
        return self.progress(spent) >= 1.0


def _int(value: Optional[str]) -> Optional[int]:
    return None if value is None else int(float(value))
