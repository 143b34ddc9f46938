"""The allowed values of every config key, declared on the schema fields and checked in one walk.

A field's rule sits in its metadata, next to its default:
`lr: float = field(default=1e-3, metadata=rule(gt=0))`. Rules that span fields are
functions listed in the schema's `cross_field_rules`; each returns a message or None.
`check` walks nested dataclasses and raises ConfigError with one line naming the key, the
value and what is allowed. OmegaConf ignores field metadata, so the schemas stay plain
Hydra structured configs. Stdlib only: the sweeper plugin imports this at Hydra start-up.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, is_dataclass
from typing import Any, Callable, Optional, Sequence

from llm_sweep.core.errors import ConfigError

RULE = "llm_sweep.rule"


@dataclass(frozen=True)
class Rule:
    """Bounds, a set of choices or a predicate for one key; a list's rule applies to each item."""

    gt: Optional[float] = None
    ge: Optional[float] = None
    lt: Optional[float] = None
    le: Optional[float] = None
    choices: Optional[Sequence[Any]] = None
    min_items: Optional[int] = None  # lists only
    test: Optional[Callable[[Any], bool]] = None
    expect: Optional[str] = None  # what `test` accepts, in words

    def problem(self, key: str, value: Any) -> Optional[str]:
        """The one-line message for a value this rule rejects; None when it is allowed (or null)."""
        if value is None:  # the type says whether null is allowed; OmegaConf checks that
            return None
        if isinstance(value, Sequence) and not isinstance(value, str):  # a list (an OmegaConf one too)
            if self.min_items is not None and len(value) < self.min_items:
                return f"{key}={list(value)!r} is not allowed: must hold at least {self.min_items} item(s)"
            for index, item in enumerate(value):
                message = self.problem(f"{key}[{index}]", item)
                if message:
                    return message
            return None
        if self.choices is not None and value not in self.choices:
            return f"{key}={value!r} is not one of {', '.join(map(str, self.choices))}"
        if self.test is not None and not self.test(value):
            return f"{key}={value!r} is not allowed: must be {self.expect}"
        bounds = self.bounds()
        if bounds and not self._within(value):
            finite = "a finite number " if isinstance(value, float) and not math.isfinite(value) else ""
            return f"{key}={value!r} is not allowed: must be {finite}{bounds}"
        return None

    def bounds(self) -> str:
        parts = [f"{op} {limit}" for op, limit in
                 ((">", self.gt), (">=", self.ge), ("<", self.lt), ("<=", self.le)) if limit is not None]
        return " and ".join(parts)

    def _within(self, value: float) -> bool:
        return (math.isfinite(value)
                and (self.gt is None or value > self.gt) and (self.ge is None or value >= self.ge)
                and (self.lt is None or value < self.lt) and (self.le is None or value <= self.le))


def rule(**kwargs: Any) -> dict[str, Rule]:
    """Field metadata holding the key's rule, e.g. `field(default=0.0, metadata=rule(ge=0, lt=1))`."""
    return {RULE: Rule(**kwargs)}


def rule_of(schema_field: Any) -> Optional[Rule]:
    return schema_field.metadata.get(RULE)


def check(config: Any, prefix: str = "") -> None:
    """Every field's rule, depth first through nested schemas, then the cross-field rules.

    `prefix` is the config path of `config` with a trailing dot (e.g. "model."), so messages
    name keys exactly as they are typed on the command line.
    """
    for schema_field in fields(config):
        value = getattr(config, schema_field.name)
        key = prefix + schema_field.name
        if is_dataclass(value):
            check(value, key + ".")
            continue
        found = rule_of(schema_field)
        message = found.problem(key, value) if found else None
        if message:
            raise ConfigError(message)
    for cross_field_rule in getattr(config, "cross_field_rules", ()):
        message = cross_field_rule(config, prefix)
        if message:
            raise ConfigError(message)
