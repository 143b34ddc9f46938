"""`python -m llm_sweep.report` on a synthetic sweep logged through the real MLflow
client into a temporary SQLite store (created once for the module)."""
from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, Param

from conftest import REPO
from llm_sweep.core.errors import DataError
from llm_sweep.report import cli as report
from llm_sweep.report.rows import config_key
from llm_sweep.report.runs import fetch_runs
from llm_sweep.report.tables import read_csv, sorted_rows, write_csv
from llm_sweep.report.write import write_report

VOCAB = 50304
HEAD_DIM = 32
TOKENS_PER_STEP = 1024
FILES = ("runs.csv", "runs.md", "loss_vs_params.png", "loss_vs_tokens_per_param.png",
         "curves.png", "optimizer.png", "comparisons.json", "summary.md")


@dataclass(frozen=True)
class Spec:
    name: str
    n_layer: int
    n_embd: int
    loss: float  # final val loss; a FAILED run logs none
    optimizer: str = "adamw"
    seed: int = 1
    budget: str = "60s"
    status: str = "FINISHED"
    lr: float = 1e-3
    parametrization: str = "sp"
    base_width: int | None = None
    base_tuned_by: str | None = None

    @property
    def params(self) -> int:
        return VOCAB * self.n_embd + self.non_embedding_params

    @property
    def non_embedding_params(self) -> int:
        return 12 * self.n_layer * self.n_embd**2

    @property
    def steps(self) -> int:  # a fixed FLOP rate: smaller models take more steps in the budget
        return 40 if self.params < 5e6 else 20

    @property
    def tokens_per_s(self) -> list[float]:  # logged windows; the report shows the median
        return [5e4 / self.params * 1e6 * f for f in (0.5, 1.0, 1.1)]


# The reference (2 x 64) with 3 seeds: spread 0.02. Wider beats deeper by 0.15 (> spread);
# SophiaG beats AdamW by 0.015 at 2 x 64 (< spread) and by 0.05 at 2 x 128 (> spread).
SPECS = [
    Spec("ref-s1", 2, 64, 3.00), Spec("ref-s2", 2, 64, 3.02, seed=2), Spec("ref-s3", 2, 64, 3.01, seed=3),
    Spec("deep4", 4, 64, 2.90), Spec("deep6", 6, 64, 2.85),
    Spec("wide128", 2, 128, 2.80), Spec("wide192", 2, 192, 2.70),
    Spec("sophia64", 2, 64, 2.995, optimizer="sophiag"), Spec("sophia128", 2, 128, 2.75, optimizer="sophiag"),
    Spec("other3x96", 3, 96, 2.95),
    Spec("longer-budget", 2, 192, 2.50, budget="120s"),  # lowest of all, but not comparable
    Spec("crashed", 4, 128, math.nan, status="FAILED"),
]


def log_run(client: MlflowClient, experiment_id: str, parent_id: str, spec: Spec) -> str:
    run = client.create_run(experiment_id, run_name=spec.name, tags={"mlflow.parentRunId": parent_id})
    params = {
        "model.name": "custom", "model.arch": "llama", "model.n_layer": spec.n_layer,
        "model.n_head": "None", "model.n_embd": spec.n_embd, "model.head_dim": HEAD_DIM,
        "optim.name": spec.optimizer, "optim.lr": spec.lr, "batch.micro_batch_size": 8,
        "model.parametrization": spec.parametrization, "model.base_width": spec.base_width,
        "model.base_tuned_by": spec.base_tuned_by,
        "batch.grad_accum": 1, "batch.seq_len": 128, "budget.time": spec.budget,
        "budget.steps": "None", "budget.tokens": "None", "seed": spec.seed, "data.name": "shakespeare",
        "model.params": spec.params, "model.non_embedding_params": spec.non_embedding_params,
        "flops_per_token": 6 * spec.params, "tokens_per_step": TOKENS_PER_STEP,
    }
    steps = spec.steps if spec.status == "FINISHED" else 12
    metrics = []
    for step in range(4, steps + 1, 4):  # train logs every 4 steps, 0.5 s per step
        metrics += [("progress/elapsed_s", 0.5 * step, step),
                    ("progress/tokens", step * TOKENS_PER_STEP, step)]
    last_loss = spec.loss if spec.status == "FINISHED" else 3.5
    for step in range(10, steps + 1, 10):  # evaluations every 10 steps: between two logs
        metrics.append(("val/loss", last_loss + (steps - step) / steps, step))
    for step, rate in zip((4, 8, 12), spec.tokens_per_s):
        metrics += [("perf/tokens_per_s", rate, step), ("perf/mfu", rate * 6 * spec.params / 1e12, step)]
    if spec.status == "FINISHED":
        tokens = steps * TOKENS_PER_STEP
        metrics += [(key, value, steps) for key, value in {
            "final/val_loss": spec.loss, "final/val_ppl": math.exp(spec.loss),
            "final/val_acc": 0.1 / spec.loss, "final/tokens": tokens,
            "final/tokens_per_param": tokens / spec.params}.items()]
    client.log_batch(run.info.run_id, metrics=[Metric(k, float(v), 0, s) for k, v, s in metrics],
                     params=[Param(k, str(v)) for k, v in params.items()])
    client.set_terminated(run.info.run_id, spec.status)
    return run.info.run_id


@dataclass(frozen=True)
class Store:
    uri: str
    client: MlflowClient
    parent_id: str
    run_ids: dict[str, str]
    out: Path


def new_store(root: Path, experiment: str) -> tuple[str, MlflowClient, str, str]:
    """A real MLflow SQLite store in `root` with one experiment and a sweep's parent run:
    its URI, a client, the experiment id and the parent's run id."""
    uri = f"sqlite:///{root}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    experiment_id = client.create_experiment(experiment, artifact_location=(root / "artifacts").as_uri())
    return uri, client, experiment_id, client.create_run(experiment_id, run_name="sweep").info.run_id


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    root = tmp_path_factory.mktemp("mlflow")
    uri, client, experiment_id, parent_id = new_store(root, "synthetic")
    run_ids = {spec.name: log_run(client, experiment_id, parent_id, spec) for spec in SPECS}
    out = root / "report"
    report.main(["--parent", parent_id, "--tracking-uri", uri, "--out", str(out)])
    return Store(uri, client, parent_id, run_ids, out)


def spec(name: str) -> Spec:
    return next(s for s in SPECS if s.name == name)


@pytest.mark.slow
def test_every_file_is_written_and_attached_to_the_parent(store):
    for name in FILES:
        assert (store.out / name).stat().st_size > 0, name
    for name in FILES:
        if name.endswith(".png"):
            assert (store.out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    attached = {Path(a.path).name for a in store.client.list_artifacts(store.parent_id, "report")}
    assert attached == set(FILES)
    assert len((store.out / "runs.md").read_text().splitlines()) == 2 + len(SPECS)


@pytest.mark.slow
def test_runs_csv_equals_the_logged_metrics(store):
    with open(store.out / "runs.csv") as f:
        rows = {row["run"]: row for row in csv.DictReader(f)}
    assert set(rows) == {s.name for s in SPECS}
    for s in SPECS:
        row = rows[s.name]
        assert row["run_id"] == store.run_ids[s.name]
        assert int(row["n_head"]) == s.n_embd // HEAD_DIM  # derived: n_head was unset
        assert int(row["params"]) == s.params
        assert int(row["non_embedding_params"]) == s.non_embedding_params
        assert row["budget"] == s.budget and row["optimizer"] == s.optimizer
        assert float(row["tokens_per_s"]) == s.tokens_per_s[1]  # the median window
        assert float(row["mfu"]) == s.tokens_per_s[1] * 6 * s.params / 1e12
        assert row["status"] == s.status
        if s.status != "FINISHED":
            assert row["val_loss"] == ""
            assert float(row["tokens"]) == 12 * TOKENS_PER_STEP  # seen before it failed
            assert row["tokens_per_s"]  # speed was logged before it failed
            continue
        tokens = s.steps * TOKENS_PER_STEP
        assert float(row["val_loss"]) == s.loss
        assert float(row["val_ppl"]) == math.exp(s.loss)
        assert float(row["val_acc"]) == 0.1 / s.loss
        assert float(row["tokens"]) == tokens
        assert float(row["tokens_per_param"]) == tokens / s.params
        assert float(row["tokens_per_non_embedding_param"]) == tokens / s.non_embedding_params
    assert list(rows)[:2] == ["longer-budget", "wide192"]  # best final loss first; failed last
    assert list(rows)[-1] == "crashed"


@pytest.mark.slow
def test_runs_csv_reads_back_the_rows_mlflow_gave(store):
    """Every field but the curve (runs.csv has none), the config key and the FLOP budget
    included: seeds of one config share a key, and only they."""
    fetched = sorted_rows(fetch_runs(store.client, parent=store.parent_id))
    read = read_csv(store.out / "runs.csv")
    assert read == [replace(row, curve=()) for row in fetched]
    keys = {row.name: row.config_key for row in read}
    assert keys["ref-s1"] == keys["ref-s2"] == keys["ref-s3"] != keys["sophia64"]
    assert len(set(keys.values())) == len(SPECS) - 2
    assert ("budget.time", "60s") in keys["ref-s1"] and all(row.flops_budget is None for row in read)
    with open(store.out / "runs.csv") as f:
        first = next(csv.DictReader(f))
    assert config_key(json.loads(first["config"])) == keys[first["run"]]


def test_an_older_runs_csv_reads_as_a_newer_one_does(tmp_path):
    """A runs.csv written before the `config` and `flops_budget` columns (the committed
    study's): its FLOP budgets and configs come from the columns that stand for them, and
    written again with both columns it reads back the same."""
    older = REPO / "tests" / "fixtures" / "runs_older_report.csv"  # docs/results/isoflop_mup's, as first written
    assert "config" not in older.read_text().splitlines()[0].split(",")
    rows = read_csv(older)
    assert {row.flops_budget for row in rows} == {1e12, 4e12, 8e12}
    assert all(("budget.flops", row.budget.split()[0]) in row.config_key for row in rows)
    by_config: dict[tuple, set] = {}
    for row in rows:
        by_config.setdefault(row.config_key, set()).add((row.params, row.budget, row.lr))
    assert all(len(seeds) == 1 for seeds in by_config.values())  # one size, budget and lr each
    assert len(by_config) < len(rows)  # some configs ran several seeds
    write_csv(rows, tmp_path / "runs.csv")
    assert read_csv(tmp_path / "runs.csv") == sorted_rows(rows)


@pytest.mark.slow
def test_val_curve_is_aligned_by_step(store):
    rows = {row.name: row for row in fetch_runs(store.client, parent=store.parent_id)}
    curve = rows["wide192"].curve  # 20 steps: evaluations at 10 and 20, train logs every 4
    assert [p.step for p in curve] == [10, 20]
    assert [p.tokens for p in curve] == [10 * TOKENS_PER_STEP, 20 * TOKENS_PER_STEP]
    assert [p.elapsed_s for p in curve] == [5.0, 10.0]  # step 10 between the logs at 8 and 12
    assert curve[-1].loss == 2.70


@pytest.mark.slow
def test_shape_conclusion_follows_the_data(store):
    summary = (store.out / "summary.md").read_text()
    assert "best wider: custom 2x192" in summary and "2.7000" in summary
    assert "best deeper: custom 6x64" in summary and "2.8500" in summary
    assert ("Best wider vs best deeper: one seed on custom 2x192 (wider) and custom 6x64 (deeper): no verdict"
            in summary)  # one seed each, named
    assert "Reference shape: custom 2x64" in summary and "mean of 3 seeds" in summary
    # Every shape ran lr 1e-3 in sp: the seed's case, said to be unfair.
    assert ("Learning rates: every shape ran one learning rate, 0.001, in the standard "
            "parametrization (sp)") in summary and "not fair" in summary
    assert "lr_transfer.json" not in summary and not (store.out / "lr_transfer.json").exists()


@pytest.mark.slow
def test_seed_spread_qualifies_the_optimizer_comparison(store):
    summary = (store.out / "summary.md").read_text()
    assert "Seed-to-seed sd of final val loss: 0.0100 (95% interval 0.0052 to 0.0628)" in summary  # 2 dof
    assert "the widest max - min over one config's seeds: 0.0200" in summary
    optimizers = summary.split("## Optimizers")[1].splitlines()[1:5]
    assert optimizers == [
        "- 3.32M params: sophiag 2.9950 (sophia64); adamw 3.0100 (ref-s1, mean of 3 seeds)",
        "  adamw (3.32M params) vs sophiag (3.32M params): one seed on sophiag (3.32M params): no verdict",
        "- 6.83M params: sophiag 2.7500 (sophia128); adamw 2.8000 (wide128)",
        "  adamw (6.83M params) vs sophiag (6.83M params): one seed on adamw (6.83M params) and sophiag "
        "(6.83M params): no verdict",
    ]


@pytest.mark.slow
def test_lowest_loss_is_marked_at_its_tokens_per_param(store):
    rows = fetch_runs(store.client, parent=store.parent_id)
    findings = write_report(rows, store.out.parent / "again", "again").findings
    best = spec("wide192")
    assert findings.lowest.name == "wide192"  # longer-budget is lower, but at another budget
    assert findings.budget == "60s" and "longer-budget" not in {r.name for r in findings.compared}
    tokens = best.steps * TOKENS_PER_STEP
    summary = (store.out / "summary.md").read_text()
    assert tokens / best.params == pytest.approx(0.00194, abs=5e-6)
    assert tokens / best.non_embedding_params == pytest.approx(0.0231, abs=5e-5)
    assert ("Lowest final val loss 2.7000 (wide192, 10.5M params) at 0.00194 tokens/param and "
            "0.0231 tokens/non-embedding param") in summary
    assert "at the edge of the explored range" in summary  # the widest model saw the fewest tokens/param
    assert "1 finished run(s) at other budgets are in runs.csv only" in summary


@pytest.mark.slow
def test_a_selection_without_sophiag_skips_the_optimizer_plot(store, tmp_path):
    report.main(["--experiment", "synthetic", "--filter", "params.optim.name = 'adamw'",
                 "--tracking-uri", store.uri, "--out", str(tmp_path)])
    summary = (tmp_path / "summary.md").read_text()
    assert not (tmp_path / "optimizer.png").exists()
    assert "- optimizer.png: no model size was run with both AdamW and SophiaG" in summary
    assert "No model size was run with more than one optimizer" in summary
    with open(tmp_path / "runs.csv") as f:
        assert {row["optimizer"] for row in csv.DictReader(f)} == {"adamw"}


@pytest.mark.slow
def test_too_few_runs_are_said_to_be_too_few(store, tmp_path):
    report.main(["--experiment", "synthetic", "--filter", "params.`model.n_embd` = '64' and params.seed = '1'",
                 "--tracking-uri", store.uri, "--out", str(tmp_path)])
    summary = (tmp_path / "summary.md").read_text()
    assert "Too few runs to compare shapes: no wider shape was run." in summary
    assert "best wider" not in summary and "Wider is lower" not in summary
    assert "No config was run with several seeds, so the run-to-run noise is unknown" in summary
    assert "adamw (3.32M params) vs sophiag (3.32M params): one seed on adamw (3.32M params) and sophiag" in summary


def test_missing_store_is_an_error_and_is_not_created(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        report.main(["--experiment", "anything"])
    assert exit_info.value.code == 2
    assert f"no MLflow store at {tmp_path}/mlflow.db" in capsys.readouterr().err
    assert not (tmp_path / "mlflow.db").exists()


def test_runs_must_be_selected(capsys):
    with pytest.raises(SystemExit) as exit_info:
        report.main([])
    assert exit_info.value.code == 2
    assert "--experiment NAME and/or --parent RUN_ID" in capsys.readouterr().err


@pytest.mark.slow
def test_unknown_experiment_names_the_known_ones(store, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        report.main(["--experiment", "nope", "--tracking-uri", store.uri, "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert re.search("'nope' does not exist; experiments: .*synthetic", capsys.readouterr().err)


@pytest.mark.slow
def test_runs_logged_without_shape_params_are_left_out_in_one_line(store, tmp_path, capsys):
    """A run that logged model.params but not the shape (another tool, an older version):
    no traceback, one line saying how many runs were left out and why."""
    experiment_id = store.client.create_experiment("mixed", artifact_location=(tmp_path / "a").as_uri())
    parent = store.client.create_run(experiment_id, run_name="sweep")
    for name in ("wide128", "deep4"):
        log_run(store.client, experiment_id, parent.info.run_id, spec(name))
    for _ in range(2):
        foreign = store.client.create_run(experiment_id, run_name="foreign")
        store.client.log_batch(foreign.info.run_id, params=[Param("model.params", "1000"), Param("seed", "1")],
                               metrics=[Metric("final/val_loss", 3.0, 0, 10)])
        store.client.set_terminated(foreign.info.run_id, "FINISHED")
    report.main(["--experiment", "mixed", "--tracking-uri", store.uri, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if "left out" in line]
    assert line.startswith("warning: left out 2 run(s) without model.arch, model.head_dim, model.n_embd")
    assert "tokens_per_step" in line and "Traceback" not in err
    with open(tmp_path / "out" / "runs.csv") as f:
        assert sorted(row["run"] for row in csv.DictReader(f)) == ["deep4", "wide128"]


def test_a_runs_csv_with_only_the_columns_a_fit_needs_reads(tmp_path):
    """A runs.csv written by another tool (a simulation, say): the measurements it lacks are
    empty, a value that is not a number is one error naming the file and line."""
    keep = ["model", "arch", "n_layer", "n_embd", "n_head", "optimizer", "lr", "budget", "params", "seed",
            "run_id", "status", "val_loss", "tokens", "flops"]
    with open(REPO / "tests" / "fixtures" / "runs_older_report.csv", newline="") as f:
        records = [{key: record[key] for key in keep} for record in csv.DictReader(f)]
    minimal = tmp_path / "runs.csv"
    with open(minimal, "w", newline="") as f:
        writer = csv.DictWriter(f, keep)
        writer.writeheader()
        writer.writerows(records)
    rows = read_csv(minimal)
    assert len(rows) == len(records) and all(row.non_embedding_params == row.params for row in rows)
    assert {row.flops_budget for row in rows} == {1e12, 4e12, 8e12}
    records[3]["n_layer"] = "two"
    with open(minimal, "w", newline="") as f:
        writer = csv.DictWriter(f, keep)
        writer.writeheader()
        writer.writerows(records)
    with pytest.raises(DataError, match=r"runs.csv, line 5: invalid literal"):
        read_csv(minimal)
