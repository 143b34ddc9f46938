"""Hydra's sweep grammar as an Optuna search space, and sampled values back as overrides.

    interval(a, b)              FloatDistribution(a, b)
    int(interval(a, b))         IntDistribution(a, b)
    tag(log, <interval>)        the same with log=True
    range(start, stop, step)    IntDistribution over the range's values (stop excluded);
                                a range with float values becomes categorical
    choice(a, b, c) or a,b,c    CategoricalDistribution

Any other override is fixed: passed verbatim to every trial.
"""
from __future__ import annotations

import functools
import itertools
import numbers
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep, Transformer
from hydra.errors import CompactHydraException, HydraException
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import FrozenTrial

TAGS = ("log",)


class SearchSpaceError(CompactHydraException, ValueError):
    """A sweep override the Optuna sweeper cannot use (Hydra prints it as one message)."""


@dataclass(frozen=True)
class SearchParam:
    """One swept override: its key as written (`optim.lr`, `+model.dropout`, `model`)."""

    key: str
    distribution: BaseDistribution
    # Categorical only: each choice written in the override grammar, by choice index.
    choice_texts: tuple[str, ...] = ()

    def override(self, value: Any) -> str:
        if isinstance(self.distribution, CategoricalDistribution):
            text = self.choice_texts[self._choice_index(value)]
        else:
            text = format_value(value)
        return f"{self.key}={text}"

    def _choice_index(self, value: Any) -> int:
        # Compares types too: Optuna's own lookup treats choice(1, true) as two equal choices.
        for index, choice in enumerate(self.distribution.choices):
            if type(choice) is type(value) and choice == value:
                return index
        return int(self.distribution.to_internal_repr(value))  # NaN, which equals nothing

    def grid_values(self) -> list[Any]:
        """Every value of a discrete parameter, for Optuna's GridSampler."""
        dist = self.distribution
        if isinstance(dist, CategoricalDistribution):
            return list(dist.choices)
        if isinstance(dist, IntDistribution):
            return list(range(dist.low, dist.high + 1, dist.step))
        raise SearchSpaceError(f"{self.key}: the grid sampler needs discrete values; "
                               "use choice(...) or range(...) instead of a float interval")


@dataclass(frozen=True)
class SearchSpace:
    """Overrides by key, in the order given: swept ones as `SearchParam`, fixed ones as text."""

    entries: dict[str, Union[SearchParam, str]]

    @property
    def params(self) -> list[SearchParam]:
        return [e for e in self.entries.values() if isinstance(e, SearchParam)]

    @property
    def distributions(self) -> dict[str, BaseDistribution]:
        return {p.key: p.distribution for p in self.params}

    def grid(self) -> dict[str, list[Any]]:
        return {p.key: p.grid_values() for p in self.params}

    def grid_points_left(self, finished: Iterable[FrozenTrial]) -> int:
        """Grid points that no finished trial has evaluated yet."""
        grid = self.grid()

        def point(values: Iterable[Any]) -> tuple[str, ...]:
            return tuple(repr(v) for v in values)  # repr keeps 1, 1.0 and True apart

        done = {point(t.params[key] for key in grid) for t in finished if t.params.keys() == grid.keys()}
        return len({point(p) for p in itertools.product(*grid.values())} - done)

    def trial_overrides(self, sampled: Mapping[str, Any]) -> list[str]:
        return [e.override(sampled[key]) if isinstance(e, SearchParam) else e
                for key, e in self.entries.items()]


def parse_search_space(overrides: Sequence[str]) -> SearchSpace:
    """The search space of `key=value` overrides; a later override of a key replaces an earlier one."""
    entries: dict[str, Union[SearchParam, str]] = {}
    for override in _parser().parse_overrides(list(overrides)):
        key = override.get_key_element()
        entries[key] = search_param(override) if override.is_sweep_override() else override.input_line
    return SearchSpace(entries)


def search_param(override: Override) -> SearchParam:
    """The Optuna distribution of one sweep override."""
    try:
        distribution, choice_texts = _distribution(override)
    except ValueError as error:  # ours, or Optuna's own checks such as log=True with low <= 0
        raise SearchSpaceError(f"{override.input_line}: {error}") from error
    return SearchParam(override.get_key_element(), distribution, choice_texts)


def _distribution(override: Override) -> tuple[BaseDistribution, tuple[str, ...]]:
    sweep = override.value()
    unknown = sweep.tags - set(TAGS)
    if unknown:
        raise ValueError(f"unknown tag(s) {sorted(unknown)}; supported: {TAGS}")
    log = "log" in sweep.tags
    if isinstance(sweep, IntervalSweep):
        if isinstance(sweep.start, int) and isinstance(sweep.end, int):  # only via int(interval())
            return IntDistribution(sweep.start, sweep.end, log=log), ()
        return FloatDistribution(float(sweep.start), float(sweep.end), log=log), ()
    if isinstance(sweep, RangeSweep):
        values = sorted(override.sweep_iterator())
        if not values:
            raise ValueError("the range is empty")
        if all(isinstance(v, int) for v in values):
            return IntDistribution(values[0], values[-1], log=log, step=abs(int(sweep.step))), ()
        return _categorical(values)
    if isinstance(sweep, ChoiceSweep):
        return _categorical(list(override.sweep_iterator()))
    raise ValueError(f"{type(sweep).__name__} is not supported by the Optuna sweeper")


def _categorical(elements: list[Any]) -> tuple[CategoricalDistribution, tuple[str, ...]]:
    # Optuna stores scalar choices only; a list or dict choice is kept as its override text.
    choices = [Transformer.str(e) if isinstance(e, (list, dict)) else e for e in elements]
    texts = [Transformer.str(e) if isinstance(e, (list, dict)) else format_value(e) for e in elements]
    return CategoricalDistribution(choices), tuple(texts)


def format_value(value: Any) -> str:
    """`value` in the override grammar, parsing back to the same value and type."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, numbers.Integral):  # also numpy integers, whose repr is np.int64(3)
        return str(int(value))
    if isinstance(value, numbers.Real):
        return repr(float(value))
    if not isinstance(value, str):
        raise TypeError(f"cannot write {value!r} as an override value")
    return value if _parses_as_itself(value) else _quote(value)


def _parses_as_itself(text: str) -> bool:
    try:
        override = _parser().parse_override(f"key={text}")
    except HydraException:
        return False
    parsed = override.value()
    return not override.is_sweep_override() and isinstance(parsed, str) and parsed == text


def _quote(text: str) -> str:
    # Inside quotes only backslashes that precede a quote (or the closing quote) are escapes.
    escaped = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", text)
    escaped = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, escaped)
    return f"'{escaped}'"


@functools.cache
def _parser() -> OverridesParser:
    return OverridesParser.create()
