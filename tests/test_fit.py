"""Scaling-law fits: Chinchilla's constants recovered from synthetic runs logged through
the real MLflow client, `report --fit` end to end, and the cases a fit must refuse or flag."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, Param

from conftest import run_app
from llm_sweep.core.errors import DataError
from llm_sweep.core.references import SEED_FLOPS_PER_TOKEN, SEED_NON_EMBEDDING_PARAMS, SEED_PARAMS
from llm_sweep.report import cli as report
from llm_sweep.report.fit import RunPoint, budget_minimum, collect, fit_scaling
from llm_sweep.report.fit_result import FitResult
from llm_sweep.report.fit_summary import fit_section

# Hoffmann et al. (2022): L(N, D) = E + A / N^alpha + B / D^beta, with C = 6 N D.
E, A, B, ALPHA, BETA = 1.69, 406.4, 410.7, 0.34, 0.28
EXPONENT_A = BETA / (ALPHA + BETA)  # N_opt ∝ C^a: 0.452
G = (ALPHA * A / (BETA * B)) ** (1 / (ALPHA + BETA))
BUDGETS = np.logspace(18, 21, 5)
SPREAD = np.linspace(-0.6, 0.6, 7) + 0.1  # shapes in decades around the optimum, off centre
NOISE = 0.004  # relative, on the final loss
NON_EMBEDDING_SHARE = 0.75
TOKENS_PER_STEP = 1024


def loss(n: float, d: float) -> float:
    return E + A / n**ALPHA + B / d**BETA


def optimal_params(c: float) -> float:
    return G * (c / 6) ** EXPONENT_A


@dataclass(frozen=True)
class Synthetic:
    params: int
    tokens: float
    budget: float
    loss: float
    seed: int
    n_layer: int
    n_embd: int


def synthetic_runs(budgets=BUDGETS, spread=SPREAD, noise=NOISE, seeds=(1,), rng_seed=0) -> list[Synthetic]:
    """Every shape once; the middle shape of each budget once per seed."""
    rng = np.random.default_rng(rng_seed)
    runs = []
    for i, c in enumerate(budgets):
        for j, decades in enumerate(spread):
            n = int(optimal_params(c) * 10**decades)
            for seed in seeds if j == len(spread) // 2 else seeds[:1]:
                d = c / (6 * n)
                runs.append(Synthetic(n, d, c, loss(n, d) * (1 + noise * rng.standard_normal()), seed,
                                      2 + i, 128 * (j + 1)))
    return runs


def as_points(runs: list[Synthetic]) -> list[RunPoint]:
    return [RunPoint(r.params, NON_EMBEDDING_SHARE * r.params, r.tokens, 6 * r.params * r.tokens, r.loss,
                     r.budget, (r.params, r.budget)) for r in runs]


def log_run(client: MlflowClient, experiment_id: str, run: Synthetic) -> None:
    logged = client.create_run(experiment_id, run_name=f"n{run.params:.3g}-c{run.budget:.0e}-s{run.seed}")
    params = {
        "model.name": "custom", "model.arch": "llama", "model.n_layer": run.n_layer, "model.n_head": "None",
        "model.n_embd": run.n_embd, "model.head_dim": 64, "model.params": run.params,
        "model.non_embedding_params": int(NON_EMBEDDING_SHARE * run.params), "optim.name": "adamw",
        "optim.lr": 1e-3, "budget.time": "None", "budget.steps": "None", "budget.tokens": "None",
        "budget.flops": run.budget, "flops_per_token": 6 * run.params, "tokens_per_step": TOKENS_PER_STEP,
        "seed": run.seed,
    }
    metrics = {"final/val_loss": run.loss, "final/tokens": run.tokens,
               "final/flops": 6 * run.params * run.tokens, "final/tokens_per_param": run.tokens / run.params}
    client.log_batch(logged.info.run_id, metrics=[Metric(k, float(v), 0, 1) for k, v in metrics.items()],
                     params=[Param(k, str(v)) for k, v in params.items()])
    client.set_terminated(logged.info.run_id, "FINISHED")


@dataclass(frozen=True)
class Store:
    uri: str
    out: Path
    fit: dict


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    """5 budgets x 7 shapes, the middle shape with 3 seeds; a 1-budget experiment; and the
    report with --fit on the first."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    chinchilla = client.create_experiment("chinchilla", artifact_location=(root / "artifacts").as_uri())
    for run in synthetic_runs(seeds=(1, 2, 3)):
        log_run(client, chinchilla, run)
    one_budget = client.create_experiment("one_budget", artifact_location=(root / "artifacts").as_uri())
    for run in synthetic_runs(budgets=BUDGETS[:1], spread=SPREAD[::2]):
        log_run(client, one_budget, run)
    out = root / "report"
    report.main(["--experiment", "chinchilla", "--tracking-uri", uri, "--out", str(out), "--fit"])
    return Store(uri, out, json.loads((out / "fit.json").read_text()))


@pytest.mark.slow
def test_chinchilla_constants_are_recovered(store):
    three, two = store.fit["approach3"], store.fit["approach2"]
    assert three["alpha"] == pytest.approx(ALPHA, abs=0.04)
    assert three["beta"] == pytest.approx(BETA, abs=0.04)
    assert three["E"] == pytest.approx(E, abs=0.1)
    assert three["a"] == pytest.approx(EXPONENT_A, abs=0.05)
    assert two["a"] == pytest.approx(EXPONENT_A, abs=0.05)
    assert two["b"] == pytest.approx(1 - EXPONENT_A, abs=0.05)
    for name in ("E", "A", "B", "alpha", "beta", "a", "b"):
        lo, hi = three[f"{name}_ci"]
        assert lo <= three[name] <= hi and three["constrained"][name], name
    assert two["a_ci"][0] <= two["a"] <= two["a_ci"][1] and two["a_constrained"]
    assert all(budget["constrained"] for budget in two["budgets"])


@pytest.mark.slow
def test_optimum_at_the_largest_budget_matches_the_true_one(store):
    c = BUDGETS[-1]
    true_tokens_per_param = c / (6 * optimal_params(c) ** 2)  # ~50
    for approach in ("approach2", "approach3"):
        at = next(a for a in store.fit[approach]["at_compute"] if a["label"] == "largest budget")
        assert at["C"] == pytest.approx(c) and not at["extrapolation"]
        assert at["tokens_per_param"] == pytest.approx(true_tokens_per_param, rel=0.2), approach
        lo, hi = at["tokens_per_param_ci"]
        assert lo < true_tokens_per_param < hi, approach


@pytest.mark.slow
def test_fit_json_schema(store):
    fit = store.fit
    assert fit["n_runs"] == 35 + 2 * 5
    assert fit["inputs"]["configs"] == 35 and fit["inputs"]["budgets"] == 5
    assert fit["inputs"]["budgets_from_compute"] == 0  # every run logged budget.flops
    assert fit["noise"]["repeated_configs"] == 5
    assert 0 < fit["noise"]["pooled_sd"] < 3 * NOISE * 4  # relative noise on losses of ~2-4
    for block in (fit, fit["non_embedding"]):
        two, three = block["approach2"], block["approach3"]
        assert {"a", "b", "a_ci", "b_ci", "budgets", "tokens_per_param", "at_compute"} <= set(two)
        assert [b["C"] for b in two["budgets"]] == pytest.approx(list(BUDGETS))
        assert {"C", "N_opt", "D_opt", "tokens_per_param", "loss_min", "constrained", "reason"} <= set(
            two["budgets"][0])
        assert two["tokens_per_param"] == [b["tokens_per_param"] for b in two["budgets"]]
        assert all(f"{name}_ci" in three for name in ("E", "A", "B", "alpha", "beta"))
    assert fit["flops_per_token"]["exponent"] == pytest.approx(1.0)
    assert fit["flops_per_token"]["coefficient"] == pytest.approx(6.0)


@pytest.mark.slow
def test_non_embedding_fit_rescales_the_same_law(store):
    """N_ne = 0.75 N: same exponents, A scaled by 0.75^alpha."""
    total, non_emb = store.fit["approach3"], store.fit["non_embedding"]["approach3"]
    assert non_emb["alpha"] == pytest.approx(total["alpha"], abs=1e-3)
    assert non_emb["A"] == pytest.approx(total["A"] * NON_EMBEDDING_SHARE ** total["alpha"], rel=1e-2)
    assert store.fit["non_embedding"]["approach2"]["a"] == pytest.approx(store.fit["approach2"]["a"], abs=1e-6)


@pytest.mark.slow
def test_report_writes_the_figures_and_the_section(store):
    for name in ("isoflop.png", "frontier.png"):
        assert (store.out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = (store.out / "summary.md").read_text()
    assert "## Scaling laws (Chinchilla Approaches 2 and 3)" in summary
    assert "| largest budget, C = 1e+21 FLOPs |" in summary
    assert "seed ~6 outside" in summary  # the truth here is ~25-50 tokens/param
    headline = [line for line in summary.splitlines() if line.startswith(("| largest budget", "| seed run"))]
    assert len(headline) == 2 and not any("not constrained" in line for line in headline)
    largest = next(line for line in summary.splitlines() if line.startswith("| 1e+21 | 7 |"))
    assert "~6 below it, ~20 below it)" in largest  # the truth here is ~25-50 tokens/param


@pytest.mark.slow
def test_too_few_budgets_is_one_line_and_exit_code_2(store, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        report.main(["--experiment", "one_budget", "--tracking-uri", store.uri, "--out", str(tmp_path), "--fit"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert err.startswith("error: too few runs for a scaling-law fit: 4 configs in 1 compute budget(s)")
    assert (tmp_path / "summary.md").exists() and not (tmp_path / "fit.json").exists()


@pytest.mark.slow
def test_command_line(store, tmp_path):
    done = run_app(["--experiment", "chinchilla", "--tracking-uri", store.uri, "--out", str(tmp_path), "--fit"],
                   cwd=tmp_path, module="llm_sweep.report", timeout=120)
    assert done.returncode == 0, done.stderr
    assert "fit.json, isoflop.png, frontier.png" in done.stdout
    assert json.loads((tmp_path / "fit.json").read_text())["approach2"]["a"] == store.fit["approach2"]["a"]


def test_minimum_at_the_edge_is_flagged():
    ln_n = np.log([1e7, 2e7, 4e7, 8e7])
    _, ln_opt, reason = budget_minimum(ln_n, np.array([3.0, 2.85, 2.75, 2.7]))
    assert "above the largest model run" in reason and ln_opt > ln_n.max()
    _, ln_opt, reason = budget_minimum(ln_n, np.array([3.0, 2.9, 2.85, 2.83]))  # vertex just inside
    assert "the lowest loss is the largest model run's: the minimum is not bracketed" in reason
    _, _, reason = budget_minimum(ln_n, np.array([3.0, 2.9, 2.85, 2.9]))
    assert reason == ""
    _, _, reason = budget_minimum(ln_n, np.array([3.0, 2.8, 2.8, 3.0]) * -1)
    assert "opens downward" in reason
    _, _, reason = budget_minimum(ln_n[:2], np.array([3.0, 2.9]))
    assert "fewer than 3 model sizes" in reason


def test_a_budget_whose_sizes_miss_the_optimum_is_left_out():
    runs = synthetic_runs(budgets=BUDGETS[:4], noise=0.001)
    runs += synthetic_runs(budgets=BUDGETS[4:], spread=np.linspace(-1.5, -0.5, 5), noise=0.001)
    fit = fit_scaling(as_points(runs), resamples=20)
    last = fit.total.approach2.minima[-1]
    assert not last.located and "above the largest model run" in last.reason
    assert fit.total.approach2.fitted_budgets == 4
    assert "not located: the minimum lies above the largest model run" in fit_section(fit)


def test_too_few_runs_raise_a_clear_error():
    runs = synthetic_runs(budgets=BUDGETS[:2], spread=SPREAD[:2])
    with pytest.raises(DataError, match="4 configs in 2 compute budget.s., 0 with 3. model sizes"):
        fit_scaling(as_points(runs))


def test_noisy_data_are_not_quoted():
    runs = synthetic_runs(budgets=BUDGETS[:2], spread=SPREAD[::2], noise=0.05, rng_seed=3)
    fit = fit_scaling(as_points(runs), resamples=20)
    assert not fit.total.approach2.a.constrained
    section = fit_section(fit)
    assert "a not constrained (95% CI" in section and f"a = {fit.total.approach2.a.value:.3f}" not in section


def test_runs_without_a_flop_budget_are_grouped_by_compute():
    runs = synthetic_runs(noise=0.001)
    jitter = np.random.default_rng(1).uniform(0.9, 1.1, len(runs))  # within a quarter decade
    points = [RunPoint(p.params, p.non_embedding_params, p.tokens * f, p.compute * f, p.loss, None, p.config)
              for p, f in zip(as_points(runs), jitter)]
    data = collect(points)
    assert data.binned == 5 and len(data.budgets) == 5
    assert [b.compute for b in data.budgets] == pytest.approx(list(BUDGETS), rel=0.1)


def test_repeated_seeds_are_one_point_and_only_the_best_config_per_size_counts():
    runs = synthetic_runs(budgets=BUDGETS[:2], spread=SPREAD[:3], seeds=(1, 2))
    points = as_points(runs)
    worse = [RunPoint(p.params, p.non_embedding_params, p.tokens, p.compute, p.loss + 0.1, p.budget,
                      ("higher lr", p.config)) for p in points]
    data = collect(points + worse)
    assert len(data.seed_losses) == 6 and data.not_best == 6
    assert sorted(len(losses) for losses in data.seed_losses) == [1, 1, 1, 1, 2, 2]


def test_seed_run_constants_match_the_model_size_functions():
    from llm_sweep.core.model_config import ModelConfig
    from llm_sweep.core.size import flops_per_token, param_count

    wide3 = ModelConfig(name="wide3", arch="llama", n_layer=10, n_head=16, n_embd=1024)
    assert (param_count(wide3), param_count(wide3, non_embedding=True), flops_per_token(wide3, 512)) == (
        SEED_PARAMS, SEED_NON_EMBEDDING_PARAMS, SEED_FLOPS_PER_TOKEN)


def test_a_best_learning_rate_at_the_edge_of_its_grid_is_flagged():
    from llm_sweep.report.fit_summary import lr_grid
    from llm_sweep.report.runs import RunRow

    def row(n_embd: int, lr: float, loss: float, seed: int = 1) -> RunRow:
        return RunRow(f"r{n_embd}-{lr}-{seed}", "r", "e", "FINISHED", "p", "llama", 2, n_embd, 1, 1, 1,
                      "adamw", lr, "1e+12 FLOPs", seed, val_loss=loss)

    rows = [row(64, 1e-3, 2.0), row(64, 3e-3, 1.9), row(64, 1e-2, 2.1),  # best inside
            row(128, 1e-3, 2.0), row(128, 3e-3, 2.2), row(128, 3e-3, 1.6, seed=2),  # mean 1.9: best, at the edge
            row(256, 1e-3, 2.0)]  # one lr: no grid
    grids = lr_grid(rows)
    assert [(g.shape, g.best_lr, g.at_edge) for g in grids] == [("2 x 64", 3e-3, False),
                                                                 ("2 x 128", 3e-3, True)]
    fit = fit_scaling(as_points(synthetic_runs(budgets=BUDGETS[:2], spread=SPREAD[::2])), resamples=5)
    section = fit_section(FitResult.from_json({**json.loads(json.dumps(fit.to_json())),
                                               "lr_grid": [grid.to_json() for grid in grids]}))
    assert "- 1e+12 FLOPs, 2 x 128 (llama, adamw): lr 0.001, 0.003; best 0.003, AT THE EDGE" in section
    assert "2 x 64 (llama, adamw): lr 0.001, 0.003, 0.01; best 0.003, inside its grid" in section


def test_a_rerun_with_the_same_seed_counts_once():
    from llm_sweep.report.fit import points_from_runs
    from llm_sweep.report.runs import RunRow

    def row(seed: int, loss: float) -> RunRow:
        return RunRow("id", "r", "e", "FINISHED", "p", "llama", 2, 64, 1, 1000, 800, "adamw", 1e-3,
                      "1e+12 FLOPs", seed, tokens=1e6, val_loss=loss, flops_budget=1e12, flops=1e12,
                      config_key=(("model.n_embd", "64"),))

    points, skipped = points_from_runs([row(1, 2.0), row(1, 2.0), row(2, 2.1)])
    assert [p.loss for p in points] == [2.0, 2.1]
    assert skipped == {"reruns of a config with the same seed": 1}


def test_a_fit_result_round_trips_through_fit_json():
    """to_json() is fit.json's content and from_json() reads it back unchanged; the committed
    fit.json, written before the result was typed, reads back to the same text."""
    fit = fit_scaling(as_points(synthetic_runs(budgets=BUDGETS[:3], spread=SPREAD[::2], seeds=(1, 2))),
                      resamples=5, skipped={"not finished": 1})
    assert FitResult.from_json(fit.to_json()) == fit
    text = json.dumps(fit.to_json(), indent=2, allow_nan=False)
    assert FitResult.from_json(json.loads(text)) == fit
    assert json.dumps(FitResult.from_json(json.loads(text)).to_json(), indent=2) == text
    committed = Path(__file__).resolve().parents[1] / "docs" / "results" / "isoflop" / "fit.json"
    written = committed.read_text()
    rewritten = json.dumps(FitResult.from_json(json.loads(written)).to_json(), indent=2, allow_nan=False)
    assert rewritten + "\n" == written
