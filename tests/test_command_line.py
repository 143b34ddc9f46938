"""Mistakes Hydra itself would report at length, as one line before anything runs
(llm_sweep.sweeping.command_line): the whole class, every schema group and config group,
checked in-process; the real command line in tests/test_app.py."""
from __future__ import annotations

import dataclasses
import json

import pytest

from llm_sweep.core.config import CONF_DIR, SWEEPS_DIR, RunConfig, _group_schema
from llm_sweep.sweeping.command_line import command_line_error

from conftest import run_app

GROUPS = [f.name for f in dataclasses.fields(RunConfig) if _group_schema(f) is not None]
CONFIG_GROUPS = sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir() and p.name != "hydra")


@pytest.mark.parametrize("group", GROUPS)
@pytest.mark.parametrize("plus", ["", "+"])
def test_a_key_the_schema_lacks_is_one_line_naming_the_nearest(group, plus):
    """Every schema-backed group, with or without `+`: the key's first field, misspelled."""
    first = dataclasses.fields(_group_schema(next(f for f in dataclasses.fields(RunConfig) if f.name == group)))[0]
    typo = f"{first.name}x"
    why = command_line_error([f"{plus}{group}.{typo}=1"])
    assert why.startswith(f"{group}.{typo} is not a config key: did you mean {group}.{first.name}?"), why
    assert "\n" not in why


@pytest.mark.parametrize("group", [*CONFIG_GROUPS, "hydra/launcher"])
def test_a_group_option_that_does_not_exist_lists_only_real_choices(group):
    why = command_line_error([f"{'+' if group in ('experiment', 'shape') else ''}{group}=nosuch",
                              *(["--multirun"] if group == "hydra/launcher" else [])])
    assert why.startswith(f"{group}=nosuch: no such {group}; the choices: "), why
    assert "_schema" not in why and "\n" not in why
    if group != "hydra/launcher":
        presets = {p.stem for p in (CONF_DIR / group).glob("*.yaml")}
        assert set(why.split("the choices: ")[1].split(", ")) == presets


@pytest.mark.parametrize("name", sorted(p.stem for p in SWEEPS_DIR.glob("*.yaml")))
def test_every_named_sweep_needs_multirun(name):
    assert command_line_error([f"+sweep={name}"]) == (
        f"+sweep={name} is a named sweep: add --multirun (python -m llm_sweep --multirun +sweep={name} ...), "
        "or hydra.mode=RUN for one job with its settings")
    assert command_line_error(["--multirun", f"+sweep={name}"]) is None
    assert command_line_error([f"+sweep={name}", "hydra.mode=RUN"]) is None  # one job, said so
    assert command_line_error([f"+sweep={name}", "--cfg", "job"]) is None  # shows its config, runs nothing


def test_good_command_lines_pass():
    for argv in (["model.n_embd=64"], ["--multirun", "model.n_embd=64,128", "optim=adamw,sophiag"],
                 ["--multirun", "hydra/sweeper=optuna", "optim.lr=tag(log,interval(1e-4,1e-2))",
                  "model.n_embd=choice(64,128)", "optim.weight_decay=range(0,1,step=0.5)"],
                 ["model=wide3", "hydra.run.dir=x"], ["--multirun", "hydra/launcher=local_parallel"],
                 ["--cfg", "job"], ["--config-name", "elsewhere"]):
        assert command_line_error(argv) is None, argv


def test_an_override_it_cannot_read_is_one_line():
    why = command_line_error(["model.n_embd=[1,2"])
    assert why.startswith("cannot read the overrides: ") and "\n" not in why


@pytest.mark.slow
@pytest.mark.parametrize("data, message", [
    (["data=text", "data.paths=[missing.txt]"], "error: data.paths: missing.txt does not exist"),
    (["data=slimpajama", "data.source=./nowhere.jsonl"],
     "error: data.source=./nowhere.jsonl: no such file or folder (nor an owner/name hub id)"),
], ids=["text", "slimpajama"])
def test_missing_data_is_one_line_before_mlflow_records_a_run(tmp_path, data, message):
    """Every data input the run names is checked before its MLflow run exists: no FAILED run
    with a path in its name is left behind."""
    result = run_app([*data, "tracking=mlflow", "hydra.run.dir=run"], cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [message]
    assert not (tmp_path / "mlflow.db").exists()
    assert json.loads((tmp_path / "run" / "status.json").read_text())["status"] == "failed"
