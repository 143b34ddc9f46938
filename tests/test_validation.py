"""Every key's allowed values: a bad one is one line naming the key, exit code 2, before any compute.

The rules live on the schema fields (llm_sweep.core.rules). The fast tests check that every key
has one and that the cross-field rules and messages read right; the slow ones type a bad
value for every ruled key into the command line. Every case goes through the app's own steps in
this process (tests/fixtures/a_hydra_steps.py): composed as Hydra composes the command line
(one composition per set of config groups it picks), then Hydra's run or multirun steps with
the app's task: its callbacks, the job or the Optuna sweeper, the exit code and the line they
print; a wrongly typed value goes to the command-line check, whose composition fails. One case
per place a bad value is caught also runs as `python -m llm_sweep`, the cases one after another
in one process (tests/fixtures/one_process.py), and must print the same line. tests/test_app.py
runs a few as processes of their own.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import math
import typing
from pathlib import Path
from typing import Any, Iterator

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from conftest import run_in_processes
from fixtures.a_hydra_steps import Composer, comparable, outcome
from hydra_plugins.llm_sweep_optuna.config import OptunaSweeperConf
from llm_sweep.core.config import (CONF_DIR, SWEEPS_DIR, BatchConfig, BudgetConfig, RunConfig,
                                   load_config, register_configs)
from llm_sweep.core.coordcheck_config import CoordcheckConfig
from llm_sweep.core.data_config import TOKENIZER_VOCAB_SIZES, DataConfig
from llm_sweep.core.errors import ConfigError
from llm_sweep.core.model_config import ModelConfig
from llm_sweep.core.optim_config import ScheduleConfig
from llm_sweep.__main__ import hydra_app
from llm_sweep.core.rules import Rule, check, rule_of
from llm_sweep.sweeping.command_line import check_command_line

register_configs()

SWEEPER = "hydra.sweeper."
# Keys whose values are names, paths, URIs or a search space: anything the user types is fine
# here, and what they point to is checked where it is opened.
FREE_FORM = {
    "model.name", "model.base_tuned_by", "data.source", "data.paths", "data.cache_dir",
    "tracking.uri", "tracking.experiment", "tracking.run_name",
    "hydra.sweeper._target_", "hydra.sweeper.study_name", "hydra.sweeper.storage",
    "hydra.sweeper.params",  # parsed by the override grammar when the sweep starts
    "hydra.sweeper.overlay",  # a path, written at the end
    "hydra.sweeper.overlay_keys",  # each one looked up in the sweep's config before any trial
}


def schema_fields(schema: type, prefix: str = "") -> Iterator[tuple[str, dataclasses.Field, Any]]:
    """(key, field, type) of every leaf field of `schema`, nested schemas walked."""
    hints = typing.get_type_hints(schema)
    for schema_field in dataclasses.fields(schema):
        hint = hints[schema_field.name]
        if dataclasses.is_dataclass(hint):
            yield from schema_fields(hint, f"{prefix}{schema_field.name}.")
        else:
            yield prefix + schema_field.name, schema_field, hint


ALL_FIELDS = [*schema_fields(RunConfig), *schema_fields(OptunaSweeperConf, SWEEPER)]
RULED_KEYS = {key for key, schema_field, _ in ALL_FIELDS if rule_of(schema_field)}


@pytest.mark.parametrize("key, schema_field, hint", ALL_FIELDS, ids=[key for key, _, _ in ALL_FIELDS])
def test_every_key_has_a_rule_or_is_free_form(key, schema_field, hint):
    boolean = hint in (bool, typing.Optional[bool])  # its type is its rule; OmegaConf checks it
    assert bool(rule_of(schema_field)) + boolean + (key in FREE_FORM) == 1, (
        f"{key} needs a rule: field(default=..., metadata=rule(...)), or a place in FREE_FORM")


def test_every_ruled_key_has_a_bad_value_on_the_command_line():
    assert RULED_KEYS <= {key for _, key in CLI_CASES}, RULED_KEYS - {key for _, key in CLI_CASES}


# --- messages ----------------------------------------------------------------------------------

@pytest.mark.parametrize("found, value, message", [
    (Rule(ge=0, lt=1), 1.5, "model.dropout=1.5 is not allowed: must be >= 0 and < 1"),
    (Rule(ge=0, lt=1), math.nan, "model.dropout=nan is not allowed: must be a finite number >= 0 and < 1"),
    (Rule(gt=0), math.inf, "model.dropout=inf is not allowed: must be a finite number > 0"),
    (Rule(choices=("a", "b")), "c", "model.dropout='c' is not one of a, b"),
    (Rule(test=lambda v: v == "ok", expect="ok"), "no", "model.dropout='no' is not allowed: must be ok"),
    (Rule(choices=("a", "b"), min_items=1), ["a", "c"], "model.dropout[1]='c' is not one of a, b"),
    (Rule(choices=("a", "b"), min_items=1), [],
     "model.dropout=[] is not allowed: must hold at least 1 item(s)"),
])
def test_a_rule_names_the_key_the_value_and_what_is_allowed(found, value, message):
    assert found.problem("model.dropout", value) == message


@pytest.mark.parametrize("found, value", [(Rule(ge=0, lt=1), 0.0), (Rule(gt=0), None),
                                          (Rule(choices=("a",), min_items=1), ["a", "a"])])
def test_a_rule_lets_allowed_values_and_null_through(found, value):
    assert found.problem("key", value) is None


def test_the_walker_names_nested_keys_by_their_path():
    run = RunConfig(model=ModelConfig(dropout=1.5), budget=BudgetConfig(steps=1),
                    batch=BatchConfig(seq_len=64))
    with pytest.raises(ConfigError, match=r"^model\.dropout=1\.5 is not allowed: must be >= 0 and < 1$"):
        check(run)
    with pytest.raises(ConfigError, match=r"^hydra\.sweeper\.n_jobs=0 is not allowed: must be >= 1$"):
        check(OptunaSweeperConf(n_jobs=0), SWEEPER)


# --- cross-field rules -------------------------------------------------------------------------

def run_with(**sections: Any) -> RunConfig:
    """A valid small run with some sections replaced."""
    base = dict(model=ModelConfig(n_embd=128, max_seq_len=256), budget=BudgetConfig(steps=10),
                batch=BatchConfig(seq_len=128))
    return RunConfig(**{**base, **sections})


@pytest.mark.parametrize("config, prefix, message", [
    (ModelConfig(n_embd=128, n_head=3), "model.", "model.n_embd=128 is not divisible by model.n_head=3"),
    (ModelConfig(n_embd=96, head_dim=64), "model.",
     "model.n_embd=96 is not a multiple of model.head_dim=64 "
     "(with model.n_head=null, heads = n_embd / head_dim)"),
    (ModelConfig(n_embd=32, head_dim=64), "model.", "model.n_embd=32 is not a multiple of model.head_dim=64"),
    (ModelConfig(n_embd=120, n_head=2), "model.",
     "model.n_embd=120 / model.n_head=2 is a head size of 60, not allowed: must be a multiple of 8"),
    (ModelConfig(n_embd=48, head_dim=12), "model.",
     "model.head_dim=12 is a head size of 12, not allowed: must be a multiple of 8"),
    (ModelConfig(parametrization="mup"), "model.",
     "model.base_width is required with model.parametrization=mup: a positive int, the n_embd"),
    (ModelConfig(parametrization="completep", base_width=64), "model.",
     "model.base_depth is required with model.parametrization=completep: a positive int, the n_layer"),
    (CoordcheckConfig(widths=[64, 128], depths=[2, 4]), "coordcheck.",
     "coordcheck.widths=[64, 128] and coordcheck.depths=[2, 4]: vary one of them, not both"),
    (CoordcheckConfig(widths=[64]), "coordcheck.",
     "coordcheck.widths=[64] is not allowed: give at least two widths, or two coordcheck.depths"),
    (ScheduleConfig(name="wsd", warmup_frac=0.5, decay_frac=0.6), "schedule.",
     "schedule.decay_frac=0.6 is not allowed: must be in [0, 1 - schedule.warmup_frac=0.5]"),
    (BudgetConfig(), "budget.",
     "budget: set at least one of budget.time, budget.steps, budget.tokens, budget.flops"),
    (DataConfig(name="text"), "data.", "data.name=text needs data.paths=[file.txt,folder/,...]"),
    (DataConfig(name="slimpajama"), "data.", "data.name=slimpajama needs data.source"),
    (run_with(batch=BatchConfig(seq_len=512)), "", "batch.seq_len=512 exceeds model.max_seq_len=256"),
    (run_with(model=ModelConfig(n_embd=128, vocab_size=50000)), "",
     "model.vocab_size=50000 is not allowed: must be >= 50257, the tokenizer's vocabulary"),
    (run_with(model=ModelConfig(n_embd=128, vocab_size=256), data=DataConfig(tokenizer="bytes")), "",
     "model.vocab_size=256 is not allowed: must be >= 257, the tokenizer's vocabulary"),
    (run_with(resume="/no/such/ckpt.pt"), "",
     "resume='/no/such/ckpt.pt' is not allowed: must be auto, never or an existing checkpoint path"),
    (run_with(budget=BudgetConfig(time="0")), "",
     "budget.time='0' is not allowed: must be a duration > 0, e.g. 3h, 90m, 45s or a number of seconds"),
    (OptunaSweeperConf(pruner="median", storage=None), SWEEPER,
     "hydra.sweeper.pruner='median' needs a storage (hydra.sweeper.storage is null)"),
])
def test_cross_field_rules_name_the_keys(config, prefix, message):
    with pytest.raises(ConfigError) as info:
        check(config, prefix)
    assert str(info.value).startswith(message)


def test_cmaes_sampler_needs_its_package(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None)
    with pytest.raises(ConfigError, match=r"^hydra\.sweeper\.sampler=cmaes needs the cmaes package"):
        check(OptunaSweeperConf(sampler="cmaes"), SWEEPER)


def test_the_rules_allow_a_valid_run_and_a_wsd_decay_that_ends_the_warmup():
    check(run_with(schedule=ScheduleConfig(name="wsd", warmup_frac=0.2, decay_frac=0.8)))
    check(OptunaSweeperConf(), SWEEPER)


def test_the_vocab_size_constant_is_the_tokenizers():
    from llm_sweep.data.tokenizer import gpt2_encoding

    assert gpt2_encoding().n_vocab == TOKENIZER_VOCAB_SIZES["gpt2"]


def test_build_model_from_a_dict_checks_the_same_rules():
    from llm_sweep.models.build import build_model

    with pytest.raises(ConfigError, match=r"^model\.n_embd=128 is not divisible by model\.n_head=3$"):
        build_model({"n_embd": 128, "n_head": 3})
    with pytest.raises(ConfigError, match=r"^model\.dropout=1\.5 is not allowed"):
        build_model({"dropout": 1.5})


# --- the shipped presets and sweeps pass their own rules ---------------------------------------

def compose_run(*overrides: str, hydra: bool = False):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=hydra)


APPENDED_GROUPS = {"shape", "mup"}  # not in the defaults list: selected with +shape=..., +mup=...
PRESETS = [f"{'+' * (group.name in APPENDED_GROUPS)}{group.name}={path.stem}" for group in sorted(CONF_DIR.iterdir())
           if group.is_dir() and group.name != "hydra" for path in sorted(group.glob("*.yaml"))]


# What a preset needs from the rest of the command line (the default model is tiny, 256 long).
PRESET_NEEDS = {"data=text": ["data.paths=[notes.txt]"], "batch=a100": ["model=noam"]}


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_passes_the_rules(preset):
    load_config(compose_run(preset, *PRESET_NEEDS.get(preset, [])))


@pytest.mark.parametrize("name", sorted(p.stem for p in SWEEPS_DIR.glob("*.yaml")))
def test_every_named_sweep_passes_the_rules(name):
    params = compose_run(f"+sweep={name}", hydra=True).hydra.sweeper.params
    # The first value of each listed sweep parameter (intervals are left to the sampler).
    first = [f"{key}={value.split(',')[0]}" for key, value in params.items() if "(" not in value]
    cfg = compose_run(f"+sweep={name}", *first, hydra=True)
    load_config(cfg)
    if cfg.hydra.sweeper._target_ == OptunaSweeperConf._target_:
        check(OmegaConf.to_object(cfg.hydra.sweeper), SWEEPER)


# --- the real command line ---------------------------------------------------------------------

MULTIRUN = "--multirun hydra/sweeper=optuna "
# (what the user types, the key its one-line error must name); one or more per ruled key.
CLI_CASES = [
    ("seed=-1", "seed"),
    ("device=tpu", "device"),
    ("dtype=fp16", "dtype"),
    ("compile_mode=fastest", "compile_mode"),
    ("compile=maybe", "compile"),
    ("resume=/no/such/ckpt.pt", "resume"),
    ("peak_flops=0", "peak_flops"),
    ("loss_chunks=-1", "loss_chunks"),
    ("model.arch=mamba", "model.arch"),
    ("model.n_layer=0", "model.n_layer"),
    ("model.n_head=0", "model.n_head"),
    ("model.n_head=3", "model.n_head"),  # 128 is not divisible by 3
    ("model.n_embd=4", "model.n_embd"),
    ("model.n_embd=96", "model.n_embd"),  # not a multiple of head_dim=64
    ("model.n_embd=120 model.n_head=2", "model.n_head"),  # head size 60
    ("model.head_dim=4", "model.head_dim"),
    ("model.vocab_size=0", "model.vocab_size"),
    ("data.tokenizer=gpt2 model.vocab_size=50000", "model.vocab_size"),  # below GPT-2's 50257
    ("model.max_seq_len=0", "model.max_seq_len"),
    ("model.dropout=1.5", "model.dropout"),
    ("model.multiple_of=0", "model.multiple_of"),
    ("model.rmsnorm_eps=0", "model.rmsnorm_eps"),
    ("model.output_mult=0", "model.output_mult"),
    ("model.attn_mult=-1", "model.attn_mult"),
    ("model.init_std=0", "model.init_std"),
    ("model.parametrization=ntk", "model.parametrization"),
    ("model.parametrization=mup", "model.base_width"),  # the proxy's width must be named
    ("model.parametrization=completep model.base_width=64", "model.base_depth"),
    ("model.base_width=0", "model.base_width"),
    ("model.base_depth=0", "model.base_depth"),
    ("optim.name=lion", "optim.name"),
    ("optim.lr=0", "optim.lr"),
    ("optim.weight_decay=-0.1", "optim.weight_decay"),
    ("optim.beta1=1.2", "optim.beta1"),
    ("optim.beta2=1", "optim.beta2"),
    ("optim.eps=0", "optim.eps"),
    ("optim.embed_lr_mult=0", "optim.embed_lr_mult"),
    ("optim.grad_clip=-1", "optim.grad_clip"),
    ("optim.rho=-0.1", "optim.rho"),
    ("optim.hessian_interval=0", "optim.hessian_interval"),
    ("schedule.name=linear", "schedule.name"),
    ("schedule.warmup_frac=1", "schedule.warmup_frac"),
    ("schedule.min_lr=-1e-4", "schedule.min_lr"),
    ("schedule.min_lr_ratio=2", "schedule.min_lr_ratio"),
    ("schedule.decay_frac=1.5", "schedule.decay_frac"),
    ("schedule=wsd schedule.warmup_frac=0.5 schedule.decay_frac=0.6", "schedule.decay_frac"),
    ("schedule.div_factor=0.5", "schedule.div_factor"),
    ("schedule.final_div_factor=0", "schedule.final_div_factor"),
    ("batch.micro_batch_size=0", "batch.micro_batch_size"),
    ("batch.grad_accum=0", "batch.grad_accum"),
    ("batch.seq_len=0", "batch.seq_len"),
    ("batch.seq_len=1024", "batch.seq_len"),  # beyond model.max_seq_len=256
    ("budget.time=soon", "budget.time"),
    ("budget.time=null", "budget.time"),  # no budget left
    ("budget.steps=0", "budget.steps"),
    ("budget.tokens=-1", "budget.tokens"),
    ("budget.flops=0", "budget.flops"),
    ("eval.interval=-1", "eval.interval"),
    ("eval.batches=0", "eval.batches"),
    ("eval.final_batches=0", "eval.final_batches"),
    ("checkpoint.interval=-1", "checkpoint.interval"),
    ("distributed.timeout=0", "distributed.timeout"),
    ("distributed.timeout=soon", "distributed.timeout"),
    ("distributed.gpus_per_trial=0", "distributed.gpus_per_trial"),
    ("distributed.trials_per_gpu=0", "distributed.trials_per_gpu"),
    ("distributed.bucket_cap_mb=0.5", "distributed.bucket_cap_mb"),
    ("tracking.backend=wandb", "tracking.backend"),
    ("tracking.log_interval=0", "tracking.log_interval"),
    ("bench.modes=[eager-fp32,eager-fp16]", "bench.modes"),
    ("bench.modes=[]", "bench.modes"),
    ("bench.warmup_steps=-1", "bench.warmup_steps"),
    ("bench.steps=0", "bench.steps"),
    ("coordcheck.parametrizations=[sp,ntk]", "coordcheck.parametrizations"),
    ("coordcheck.widths=[4,64]", "coordcheck.widths"),
    ("coordcheck.widths=[64]", "coordcheck.widths"),  # one width and no depths: nothing varies
    ("coordcheck.widths=[64,128] coordcheck.depths=[1,2]", "coordcheck.widths"),  # both vary
    ("coordcheck.depths=[0,1]", "coordcheck.depths"),
    ("coordcheck.steps=0", "coordcheck.steps"),
    ("coordcheck.batch_size=0", "coordcheck.batch_size"),
    ("coordcheck.seq_len=0", "coordcheck.seq_len"),
    ("sweep.max_gpu_hours=0", "sweep.max_gpu_hours"),
    ("sweep.bench=/no/such/bench.json", "sweep.bench"),
    ("sweep.seeds=0", "sweep.seeds"),
    ("data.name=wikitext", "data.name"),
    ("data=text", "data.paths"),
    ("data.val_fraction=2", "data.val_fraction"),
    ("data.val_fraction=0", "data.val_fraction"),
    ("data.split_seed=-1", "data.split_seed"),
    ("data.num_proc=0", "data.num_proc"),
    ("data.tokenizer=sentencepiece", "data.tokenizer"),
    ("data.tokenizer=bytes model.vocab_size=200", "model.vocab_size"),  # below 257 byte ids
    (MULTIRUN + "hydra.sweeper.sampler=foo", "hydra.sweeper.sampler"),
    (MULTIRUN + "hydra.sweeper.seed=-1", "hydra.sweeper.seed"),
    (MULTIRUN + "hydra.sweeper.direction=up", "hydra.sweeper.direction"),
    (MULTIRUN + "hydra.sweeper.n_trials=0", "hydra.sweeper.n_trials"),
    (MULTIRUN + "hydra.sweeper.n_jobs=0", "hydra.sweeper.n_jobs"),
    (MULTIRUN + "hydra.sweeper.max_failure_rate=2", "hydra.sweeper.max_failure_rate"),
    (MULTIRUN + "hydra.sweeper.pruner=bar", "hydra.sweeper.pruner"),
    (MULTIRUN + "hydra.sweeper.pruner=median hydra.sweeper.storage=null", "hydra.sweeper.storage"),
    (MULTIRUN + "hydra.sweeper.pruner_min_resource=0", "hydra.sweeper.pruner_min_resource"),
    (MULTIRUN + "hydra.sweeper.pruner=hyperband", "hydra.sweeper.pruner_min_resource"),
    (MULTIRUN + "hydra.sweeper.timeout=soon", "hydra.sweeper.timeout"),
    (MULTIRUN + "hydra.sweeper.seeds=[1,-1]", "hydra.sweeper.seeds"),
]
# Wrong types fail in Hydra's composition, checked before Hydra runs: one line, exit code 2.
TYPE_CASES = [
    ("model.n_layer=abc", "model.n_layer"),
    ("optim.lr=fast", "optim.lr"),
    ("checkpoint.final=maybe", "checkpoint.final"),
    (MULTIRUN + "hydra.sweeper.n_trials=abc", "hydra.sweeper.n_trials"),
]
CALL_LIMIT_S = 30  # CPU seconds: no case may get as far as training
# One real command line per place a bad value is caught: the job's load_config (a value, a
# cross-field rule, a group option with a value), the sweep callbacks (sweep.*), the Optuna
# sweeper's start, and the composition before Hydra runs (an app key, a sweeper key).
CLI_SAMPLES = ["model.dropout=1.5", "model.n_embd=120 model.n_head=2",
               "schedule=wsd schedule.warmup_frac=0.5 schedule.decay_frac=0.6", "sweep.seeds=0",
               MULTIRUN + "hydra.sweeper.pruner=median hydra.sweeper.storage=null",
               "model.n_layer=abc", MULTIRUN + "hydra.sweeper.n_trials=abc"]


def command_line(typed: str, folder: Path) -> list[str]:
    """The arguments of a case as the tests type them: no tracking, its own run and sweep folders."""
    return [*typed.split(), "tracking=none", f"hydra.run.dir={folder / 'run'}", f"hydra.sweep.dir={folder / 'sweep'}"]


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory) -> dict[str, dict]:
    """The CLI_SAMPLES run as `python -m llm_sweep`, one after another in one process
    (tests/fixtures/one_process.py): {typed: {rc, out, cpu_s}} (`out`: stdout and stderr together)."""
    root = tmp_path_factory.mktemp("bad_values")
    jobs = []
    for index, case in enumerate(CLI_SAMPLES):
        (root / str(index)).mkdir()
        jobs.append({"module": "llm_sweep", "cwd": str(root / str(index)),
                     "args": command_line(case, Path("."))})
    return dict(zip(CLI_SAMPLES, run_in_processes(jobs, root, processes=1)))


@pytest.fixture(scope="module")
def in_process(tmp_path_factory) -> dict[str, dict]:
    """Every case as the app runs it, in this process: {typed: {rc, out, cpu_s}}. A wrong type
    goes to the command-line check (its composition fails); any other case is composed as
    Hydra composes it (a_hydra_steps.Composer) and handed to Hydra's run or multirun steps after
    the composition: the callbacks' start hooks, then the job or the sweeper."""
    root, composer = tmp_path_factory.mktemp("in_process"), Composer(CONF_DIR)
    results = {}
    for index, (typed, _) in enumerate(CLI_CASES + TYPE_CASES):
        args = command_line(typed, root / str(index))
        if typed in dict(TYPE_CASES):
            results[typed] = outcome(lambda: check_command_line(args))
        else:
            results[typed] = outcome(lambda: composer.run(composer.config(args), hydra_app))
    return results


def test_a_shared_composition_is_the_composition_of_the_command_line(tmp_path):
    """What `in_process` composes once per set of group options and then overrides is what
    Hydra composes from the whole command line, app and hydra node alike."""
    composer = Composer(CONF_DIR)
    for typed in ("data.tokenizer=gpt2 model.vocab_size=50000", CLI_SAMPLES[2], CLI_SAMPLES[4],
                  "--multirun +sweep=isoflop_gpu budget.flops=1e14 +shape=4x64 optim.lr=3e-3"):
        args = command_line(typed, tmp_path)
        assert comparable(composer.config(args)) == comparable(composer.compose(args)), typed


@pytest.mark.slow
@pytest.mark.parametrize("typed, key", CLI_CASES, ids=[typed for typed, _ in CLI_CASES])
def test_a_bad_value_is_one_line_naming_the_key_with_exit_code_2(in_process, typed, key):
    check_one_line(in_process[typed], key)


@pytest.mark.slow
@pytest.mark.parametrize("typed, key", TYPE_CASES, ids=[typed for typed, _ in TYPE_CASES])
def test_a_wrongly_typed_value_fails_in_composition_naming_the_key(in_process, typed, key):
    check_type_line(in_process[typed], key)


@pytest.mark.slow
@pytest.mark.parametrize("typed", CLI_SAMPLES)
def test_the_real_command_line_says_the_same(cli_runs, in_process, typed):
    key = dict(CLI_CASES + TYPE_CASES)[typed]
    result = cli_runs[typed]
    (check_type_line if typed in dict(TYPE_CASES) else check_one_line)(result, key)
    assert last_line(result) == last_line(in_process[typed])


def last_line(result: dict) -> str:
    return result["out"].strip().splitlines()[-1]


def check_one_line(result: dict, key: str) -> None:
    assert result["rc"] == 2, result["out"][-2000:]
    assert "Traceback" not in result["out"]
    last = last_line(result)
    assert last.startswith("error: ") and key in last, last
    assert result["cpu_s"] < CALL_LIMIT_S


def check_type_line(result: dict, key: str) -> None:
    assert result["rc"] == 2
    (line,) = result["out"].strip().splitlines()
    assert line.startswith(f"error: Error merging override {key}=") and "Value " in line, line
    assert result["cpu_s"] < CALL_LIMIT_S
