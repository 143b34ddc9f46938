"""Mistakes Hydra itself would report at length, as one line before anything runs
(llm_sweep.sweeping.command_line): the whole class, every schema group and config group,
checked in-process; the real command line in tests/test_app.py, and here for missing data
(the commands one after another in one process: tests/fixtures/one_process.py)."""
from __future__ import annotations

import dataclasses
import json

import pytest

from llm_sweep.core.config import CONF_DIR, SWEEPS_DIR, RunConfig, _group_schema
from llm_sweep.sweeping.command_line import command_line_error

from conftest import run_in_processes

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
    why = command_line_error([f"{'+' if group in ('experiment', 'shape', 'mup') else ''}{group}=nosuch",
                              *(["--multirun"] if group == "hydra/launcher" else [])])
    assert why.startswith(f"{group}=nosuch: no such {group}; the choices: "), why
    assert "_schema" not in why and "\n" not in why
    if group != "hydra/launcher":
        presets = {p.stem for p in (CONF_DIR / group).glob("*.yaml")}
        assert set(why.split("the choices: ")[1].split(", ")) == presets


SWEEPS = sorted(p.stem for p in SWEEPS_DIR.glob("*.yaml"))


@pytest.mark.parametrize("name", SWEEPS)
def test_every_named_sweep_needs_multirun(name):
    """Refused at once without --multirun; with it, the sweep's config is composed and passes."""
    assert command_line_error([f"+sweep={name}"]) == (
        f"+sweep={name} is a named sweep: add --multirun (python -m llm_sweep --multirun +sweep={name} ...), "
        "or hydra.mode=RUN for one job with its settings")
    assert command_line_error(["--multirun", f"+sweep={name}"]) is None


def test_a_named_sweep_as_one_job_or_shown_passes():
    """Whether a named sweep is refused depends on the flags, not on which sweep it is (the
    composition each sweep passes is checked above)."""
    assert command_line_error([f"+sweep={SWEEPS[0]}", "hydra.mode=RUN"]) is None  # one job, said so
    assert command_line_error([f"+sweep={SWEEPS[0]}", "--cfg", "job"]) is None  # shows its config, runs nothing


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


MISSING_DATA = {
    "text": (["data=text", "data.paths=[missing.txt]"], "error: data.paths: missing.txt does not exist"),
    "slimpajama": (["data=slimpajama", "data.source=./nowhere.jsonl"],
                   "error: data.source=./nowhere.jsonl: no such file or folder (nor an owner/name hub id)"),
}


@pytest.fixture(scope="module")
def missing_data(tmp_path_factory) -> dict[str, dict]:
    """Each MISSING_DATA command run as `python -m llm_sweep`, one after another in one process
    (tests/fixtures/one_process.py), each in a folder of its own: {name: {rc, out, cwd}}."""
    root = tmp_path_factory.mktemp("missing_data")
    jobs = []
    for name, (data, _) in MISSING_DATA.items():
        (root / name).mkdir()
        jobs.append({"module": "llm_sweep", "cwd": str(root / name),
                     "args": [*data, "tracking=mlflow", "hydra.run.dir=run"]})
    results = run_in_processes(jobs, root, processes=1)
    return {name: {**result, "cwd": root / name} for name, result in zip(MISSING_DATA, results)}


@pytest.mark.slow
@pytest.mark.parametrize("name", MISSING_DATA)
def test_missing_data_is_one_line_before_mlflow_records_a_run(missing_data, name):
    """Every data input the run names is checked before its MLflow run exists: no FAILED run
    with a path in its name is left behind. (Its one line is all it prints, on stdout or stderr.)"""
    result, folder = missing_data[name], missing_data[name]["cwd"]
    assert result["rc"] == 2 and result["out"].strip().splitlines() == [MISSING_DATA[name][1]]
    assert not (folder / "mlflow.db").exists()
    assert json.loads((folder / "run" / "status.json").read_text())["status"] == "failed"
