"""The command line checked before Hydra runs it: what Hydra itself would refuse (a key the
schema lacks, a config group option that does not exist, an override it cannot read) and a
named sweep without --multirun become one line on stderr and exit code 2, naming the key
and the fix. Hydra's own report of the same mistakes spans several lines, exits 1, and
lists the internal `*_schema` entries as choices; a named sweep without --multirun would
silently train one job.

The overrides are composed once with the Compose API, each sweep at its first value, and
the result's keys checked against the schema (`+model.n_emb=256` would add one the run then
ignores); the values themselves are checked per job, where a bad one fails only its own job.
"""
from __future__ import annotations

from typing import Optional, Sequence

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import ConfigCompositionException, HydraException, MissingConfigException

from llm_sweep.core.config import CONF_DIR, refuse_unknown_keys, register_configs, run_keys, unknown_key
from llm_sweep.core.console import exit_with_error
from llm_sweep.core.errors import ConfigError

MULTIRUN_FLAGS = ("--multirun", "-m")
# Flags that change which config is composed: the check would compose the wrong one.
OTHER_CONFIG = ("--config-path", "--config-name", "--config-dir", "-cp", "-cn", "-cd")
# Flags that show the config or help instead of running: a named sweep is fine there.
SHOW_ONLY = ("--cfg", "-c", "--info", "-i", "--help", "-h", "--hydra-help", "--shell-completion", "-sc")
SCHEMA_SUFFIX = "_schema"  # the ConfigStore's typed bases of each group: not choices


def check_command_line(argv: Sequence[str]) -> None:
    """Exit with one line and code 2 on a mistake Hydra would report at length."""
    why = command_line_error(argv)
    if why:
        exit_with_error(why)


def command_line_error(argv: Sequence[str]) -> Optional[str]:
    if any(arg.split("=")[0] in OTHER_CONFIG for arg in argv):
        return None
    given = [arg for arg in argv if not arg.startswith("-") and ("=" in arg or arg.startswith("~"))]
    try:
        overrides = OverridesParser.create().parse_overrides(given)
    except HydraException as exc:
        return f"cannot read the overrides: {_first_line(exc)}"
    multirun = any(arg in MULTIRUN_FLAGS for arg in argv)
    one_job = any(o.key_or_group == "hydra.mode" and str(o.value()).upper() == "RUN" for o in overrides) or any(
        arg.split("=")[0] in SHOW_ONLY for arg in argv)
    for override in overrides:
        if override.key_or_group == "sweep" and not (multirun or one_job):
            return (f"{override.input_line} is a named sweep: add --multirun "
                    f"(python -m llm_sweep --multirun {override.input_line} ...), or hydra.mode=RUN for one "
                    "job with its settings")
    concrete = [_one_value(o) for o in overrides]
    register_configs()  # the schemas the presets extend
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
            cfg = compose("config", overrides=concrete, return_hydra_config=True)
        refuse_unknown_keys(run_keys(cfg))  # a key `+` added beside the schema's
    except MissingConfigException as exc:
        return _missing_option(exc)
    except ConfigCompositionException as exc:
        return _not_a_key(exc, overrides) or _with_cause(exc)
    except ConfigError as exc:
        return str(exc)
    return None


def _one_value(override: Override) -> str:
    """The override with a sweep at one of its values: the first of a choice or range, the
    start of an Optuna interval (`interval(1e-4,1e-2)`, `tag(log,interval(...))`)."""
    if not override.is_sweep_override():
        return override.input_line
    try:
        value = next(override.sweep_string_iterator())
    except HydraException:  # an interval: not enumerable
        value = str(override.value().start)
    return f"{override.get_key_element()}={value}"


def _first_line(exc: Exception) -> str:
    return next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)


def _with_cause(exc: Exception) -> str:
    """`model.n_layer=abc`: the override and why it could not be merged, on one line."""
    cause = exc.__cause__
    return f"{_first_line(exc)}: {_first_line(cause)}" if cause is not None else _first_line(exc)


def _missing_option(exc: MissingConfigException) -> str:
    """`optim=adam`: the group, what was asked and the real choices (no `*_schema`)."""
    options = [option for option in (exc.options or []) if not option.endswith(SCHEMA_SUFFIX)]
    asked = exc.missing_cfg_file or _first_line(exc)
    group, _, name = str(asked).rpartition("/")
    if not group or not options:
        return _first_line(exc)
    return f"{group}={name}: no such {group}; the choices: {', '.join(sorted(options))}"


def _not_a_key(exc: ConfigCompositionException, overrides) -> Optional[str]:
    """`model.n_emb=256`: the key Hydra could not override, with the nearest real key."""
    text = str(exc)
    for override in overrides:
        key = override.key_or_group
        if f"'{key}'" in text and "." in key and not override.is_hydra_override():
            why = unknown_key(key)
            if why:
                return why
    return None
