"""benchmarks/gpu_isoflop.sh: the study of sweeps/isoflop_gpu.yaml in one device command (its
phases fit, its jobs are the sweep's own commands and none repeats data), a dry run of the
same steps at tiny scale on the CPU, and its returned runs imported into MLflow for the report."""
from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile

import pytest
import yaml

from conftest import REPO
from fixtures.a_hydra_steps import Composer
from llm_sweep.core.budget import Budget
from llm_sweep.core.config import CONF_DIR, load_config, register_configs
from llm_sweep.core.run_record import METRICS_FILE, STATUS_FILE, SUMMARY_FILE
from llm_sweep.core.size import flops_per_token, param_count

SCRIPT = REPO / "benchmarks" / "gpu_isoflop.sh"
SWEEP = REPO / "sweeps" / "isoflop_gpu.yaml"
GPU_MACHINE = REPO / "tests" / "gpu_machine"  # its sitecustomize hides mlflow, optuna, submitit, ...
RETURNED_FILES = 8  # what the device tool brings back from $OUT at most
COMMAND = "python -m llm_sweep --multirun +sweep=isoflop_gpu"
TRAIN_BYTES = 45_093_794  # data=english's training split in bytes (test_english_corpus.py measures it)


def script_study() -> list[str]:
    """The STUDY lines of the script: each one Hydra sweep on top of +sweep=isoflop_gpu."""
    block = re.search(r"^STUDY=\(\n(.*?)^\)", SCRIPT.read_text(), flags=re.M | re.S).group(1)
    return re.findall(r'^\s+"([^"]*)"', block, flags=re.M)


def study_jobs() -> list[list[str]]:
    """Each line expanded as Hydra's basic sweeper does: the sweep's params, the line's
    overrides replacing those of the same key, every combination."""
    params = yaml.safe_load(SWEEP.read_text())["hydra"]["sweeper"]["params"]
    jobs = []
    for line in script_study():
        grid = {**{key: str(value).split(",") for key, value in params.items()},
                **dict((key, value.split(",")) for key, value in (o.split("=", 1) for o in line.split()))}
        jobs += [[f"{key}={value}" for key, value in zip(grid, values)]
                 for values in itertools.product(*grid.values())]
    return jobs


def test_the_phases_fit_one_device_command():
    text = SCRIPT.read_text()
    phases = {name: int(limit) for name, limit in re.findall(r"^phase (\w+) (\d+) ", text, flags=re.M)}
    start_by, job_limit = map(int, re.search(r"^START_BY=(\d+) JOB_LIMIT=(\d+)", text, flags=re.M).groups())
    assert list(phases) == ["setup", "corpus"]
    # no job starts after start_by, and the last one started ends within job_limit
    # within the ~330 s of device time the study has (600 s is the most one command may take)
    assert sum(phases.values()) + start_by + job_limit <= 330
    assert job_limit >= 90  # start-up, a cold compile while seven others compile, training, eval


def test_the_study_is_the_sweeps_own_commands():
    header = SWEEP.read_text().split("\ndefaults:")[0]
    for line in script_study():
        assert f"#   {COMMAND} {line}".rstrip() + "\n" in header + "\n", line


def test_every_job_fits_the_corpus_and_each_budget_brackets_the_optimum():
    """Each job's config as Hydra composes it: one composition per shape, the job's other
    overrides applied as Hydra applies them (tests/fixtures/a_hydra_steps.py)."""
    register_configs()
    jobs = study_jobs()
    assert len(jobs) == len({tuple(sorted(job)) for job in jobs}) == 25
    runs, composer = [], Composer(CONF_DIR)
    for job in jobs:
        run = load_config(composer.config(["+sweep=isoflop_gpu", *job]))
        per_token, per_step = flops_per_token(run.model, run.batch.seq_len), run.batch.tokens_per_step
        tokens = min(Budget(run.budget, per_token).steps_allowed(per_step, 1.0).values()) * per_step
        runs.append((job, run, tokens))
    assert len(composer.bases) == 5  # the five shapes
    assert max(tokens for _, _, tokens in runs) < TRAIN_BYTES  # no run sees a byte twice (expected)
    for _, run, _ in runs:
        assert (run.data.name, run.data.tokenizer, run.dtype, run.compile) == (
            "english", "bytes", "bf16", True)
        assert (run.model.n_layer, run.model.head_dim, run.model.n_embd % 64) == (4, 64, 0)
    grid = [(run, tokens) for job, run, tokens in runs
            if not any(o.startswith(("optim.lr", "seed")) for o in job)]
    for budget in (5e13, 1e14, 2e14):
        ratios = sorted(tokens / param_count(run.model) for run, tokens in grid if run.budget.flops == budget)
        assert len(ratios) >= 4 and ratios[0] < 20 < ratios[-1], (budget, ratios)  # ~20 inside
    for job, run, _ in runs:  # the lr check: half and twice each shape's own lr
        if any(o.startswith("optim.lr") for o in job):
            shape = yaml.safe_load((CONF_DIR / "shape" / f"{run.model.name}.yaml").read_text())
            assert run.optim.lr / float(shape["optim"]["lr"]) in (0.5, 2.0), job


# --- the dry run: every phase on the CPU, as the GPU machine has it ---------------------------

@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gpu_isoflop")
    env = {**os.environ, "GPU_ISOFLOP_DRY": "1", "GPU_ISOFLOP_PYTHON": sys.executable,
           "GPU_ISOFLOP_CORPUS": str(tmp / "corpus"), "OUT": str(tmp / "out"), "RUNS": str(tmp / "runs"),
           "GPU_ISOFLOP_SITE": str(tmp / "site"), "LLM_SWEEP_CACHE": str(tmp / "cache")}
    packed = subprocess.run(["bash", str(SCRIPT), "--corpus"], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=300)
    assert packed.returncode == 0, packed.stdout[-3000:] + packed.stderr[-3000:]
    env["PYTHONPATH"] = str(GPU_MACHINE)  # without the packages the GPU machine lacks
    env["LLM_SWEEP_CACHE"] = str(tmp / "device_cache")  # the device finds only the carried shards
    done = subprocess.run(["bash", str(SCRIPT)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)
    return tmp, done


@pytest.mark.slow
def test_dry_run_runs_every_phase_and_returns_its_files(dry_run):
    tmp, done = dry_run
    out = tmp / "out"
    log = (out / "gpu_isoflop.log").read_text()
    assert done.returncode == 0, log[-4000:]
    assert "=== setup: exit 0" in log and "=== corpus: exit 0" in log
    assert len(list((tmp / "corpus").glob("shakespeare-*.tar.xz"))) == 1
    assert sorted(p.name for p in out.iterdir()) == ["gpu_isoflop.log", "isoflop_runs.tar.gz", "jobs.tsv",
                                                    "runs.jsonl"]
    assert len(list(out.iterdir())) <= RETURNED_FILES
    names = [line.split("\t")[0] for line in (out / "jobs.tsv").read_text().splitlines()]
    assert names == ["4x128-flops5e13", "4x192-flops5e13", "4x256-flops5e13"]  # the first three
    records = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    assert sorted(r["name"] for r in records) == sorted(names)
    assert all(r["exit"] == 0 and r["summary"]["steps"] == 2 for r in records)
    with tarfile.open(out / "isoflop_runs.tar.gz") as bundle:
        members = set(bundle.getnames())
    for name in names:
        for kept in (".hydra/config.yaml", ".hydra/overrides.yaml", METRICS_FILE, SUMMARY_FILE,
                     STATUS_FILE):
            assert f"runs/{name}/{kept}" in members
        assert f"logs/{name}.log" in members


@pytest.mark.slow
def test_the_returned_runs_import_into_mlflow_for_the_report(dry_run, tmp_path):
    from llm_sweep.report.runs import fetch_runs, open_client  # MLflow: not on the GPU machine
    from llm_sweep.tracking.import_runs import import_runs

    tmp, _ = dry_run
    with tarfile.open(tmp / "out" / "isoflop_runs.tar.gz") as bundle:
        bundle.extractall(tmp_path / "returned", filter="data")
    killed = tmp_path / "returned" / "runs" / "4x256-killed"  # a job its time limit killed
    shutil.copytree(tmp_path / "returned" / "runs" / "4x256-flops5e13", killed)
    (killed / SUMMARY_FILE).unlink()
    metrics = (killed / METRICS_FILE).read_text().splitlines()
    (killed / METRICS_FILE).write_text("".join(f"{line}\n" for line in metrics if "final/" not in line))
    (killed / STATUS_FILE).write_text(json.dumps({"status": "running"}))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert len(import_runs(tmp_path / "returned", uri, None)) == 4
    assert import_runs(tmp_path / "returned", uri, None) == []  # again: nothing new

    client, _ = open_client(uri, tmp_path)
    rows = fetch_runs(client, ["isoflop_gpu"])
    records = map(json.loads, (tmp / "out" / "runs.jsonl").read_text().splitlines())
    summaries = {record["name"]: record["summary"] for record in records}
    finished = [row for row in rows if row.finished]
    assert len(rows) == 4 and len(finished) == 3
    for row in finished:
        summary = summaries[f"{row.preset}-flops5e13"]
        assert row.val_loss == pytest.approx(summary["val_loss"])
        assert (row.params, row.tokens, row.n_layer) == (summary["params"], summary["tokens"], 4)
        assert row.flops_budget == 5e13 and row.curve  # the final evaluation, at its step
    [failed] = [row for row in rows if not row.finished]
    assert failed.status == "FAILED" and failed.val_loss is None
    assert "killed" in client.get_run(failed.run_id).data.tags["error"]
