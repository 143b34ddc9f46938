"""Parametrizations compared (llm_sweep.report.parametrizations): at each shape the best
config of each parametrization judged over seeds, with how each side's lr was set and
whether the comparison rests on a tuned base; each parametrization's loss across widths
step by step; on rows with a known truth, and through `python -m llm_sweep.report` on runs
logged with the real MLflow client."""
from __future__ import annotations

import json

import numpy as np
import pytest

from llm_sweep.report import cli as report
from llm_sweep.report.analysis import analyse
from llm_sweep.report.configs import group_configs
from llm_sweep.report.parametrizations import parametrization_shapes, width_trends
from llm_sweep.report.rows import RunRow, config_key
from llm_sweep.report.tables import read_csv
from test_report import Spec, log_run, new_store

WIDTHS = (64, 128, 256, 512)
SEEDS = (1, 2, 3)
SD = 0.002  # the seeds' noise (Welch at 3 seeds a side decides a 0.04 gap at p < 0.01 with it)
STUDY = "base_study"


def mup_loss(width: int) -> float:
    """The truth: muP from a tuned base falls 0.06 per doubling of width."""
    return 1.60 - 0.06 * np.log2(width / 64)


def sp_loss(width: int, lr: float) -> float:
    """sp, tuned per width: its optimum halves as the width doubles, and at it sp is 0.04
    behind muP from width 128 on (at the base, 64, the two are one model at sp's constants:
    0.1 behind)."""
    optimum = 4e-3 * 64 / width
    behind = 0.1 if width == 64 else 0.04
    return mup_loss(width) + behind + 0.08 * np.log(lr / optimum) ** 2


def row(n_embd: int, lr: float, loss: float, parametrization: str, seed: int,
        base_tuned_by: str | None = None) -> RunRow:
    params = {"model.n_embd": str(n_embd), "optim.lr": str(lr), "model.parametrization": parametrization,
              "model.base_tuned_by": str(base_tuned_by)}
    return RunRow(f"{parametrization}-{n_embd}-{lr:g}-{seed}", "run", "e", "FINISHED", "tiny", "llama", 2, n_embd,
                  n_embd // 64, 12 * 2 * n_embd**2, 12 * 2 * n_embd**2, "adamw", lr, "1000 steps", seed,
                  val_loss=loss, parametrization=parametrization, base_width=64 if parametrization != "sp" else None,
                  base_tuned_by=base_tuned_by, config_key=config_key(params))


def study(rng: np.random.Generator, tuned_by: str | None = STUDY, sp_grid: tuple[float, ...] = (0.5, 1.0, 2.0)
          ) -> list[RunRow]:
    """The transfer study's design: muP at 3 seeds a width; sp's lr scanned at one seed
    (`sp_grid` x its optimum), then its best at the other seeds."""
    rows = [row(w, 3.5e-3, mup_loss(w) + rng.normal(0, SD), "mup", s, tuned_by) for w in WIDTHS for s in SEEDS]
    for w in WIDTHS:
        lrs = [4e-3 * 64 / w * f for f in sp_grid]
        rows += [row(w, lr, sp_loss(w, lr) + rng.normal(0, SD), "sp", SEEDS[0]) for lr in lrs]
        best = min(lrs, key=lambda lr: sp_loss(w, lr))
        rows += [row(w, best, sp_loss(w, best) + rng.normal(0, SD), "sp", s) for s in SEEDS[1:]]
    return rows


def test_each_width_judges_mup_from_a_tuned_base_against_sp_tuned_there():
    rows = study(np.random.default_rng(0))
    shapes = parametrization_shapes(group_configs(rows), rows)
    assert [shape.shape[2] for shape in shapes] == list(WIDTHS)
    for shape in shapes:
        [m] = shape.matchups
        assert m.loss.a.startswith("mup (base width 64)") and m.loss.b.startswith("sp")
        assert m.loss.decided and m.loss.diff < 0 and (m.loss.n_a, m.loss.n_b) == (3, 3)
        gap = 0.1 if shape.shape[2] == 64 else 0.04
        assert m.loss.diff_ci[0] < -gap < m.loss.diff_ci[1]  # the true gap inside the interval
        sp = shape.settings["sp"]
        assert sp.fair and "lr tuned at this shape" in sp.text and "the best of 3" in sp.text
        assert shape.settings["mup (base width 64)"].tuned_base == STUDY
        assert shape.fair and shape.tuned_bases == (STUDY,)


def test_an_untuned_base_or_a_best_lr_at_the_grid_edge_is_said():
    rows = study(np.random.default_rng(1), tuned_by=None, sp_grid=(1.0, 2.0, 4.0))  # sp's best: the lowest lr
    for shape in parametrization_shapes(group_configs(rows), rows):
        assert shape.settings["mup (base width 64)"].fair is None and shape.tuned_bases == ()
        assert shape.settings["sp"].fair is False and "AT THE EDGE" in shape.settings["sp"].text
        assert shape.fair is False


def test_the_width_trend_falls_step_by_step_only_where_the_seeds_decide_it():
    rows = study(np.random.default_rng(2))
    trends = {trend.label: trend for trend in width_trends(group_configs(rows))}
    mup = trends["mup (base width 64), llama 2 layers"]
    assert [c.best.n_embd for c in mup.configs] == list(WIDTHS) and len(mup.steps) == 3
    assert mup.falls_monotonically is True
    assert all(step.loss.diff == pytest.approx(-0.06, abs=4 * SD) for step in mup.steps)
    # flat from 256 to 512: that step is not decided, so the loss does not fall at every width
    flat = [r if r.n_embd != 512 or r.parametrization != "mup" else
            row(512, r.lr, mup_loss(256) + (r.val_loss - mup_loss(512)), "mup", r.seed, STUDY) for r in rows]
    [flat_mup] = [t for t in width_trends(group_configs(flat)) if t.label.startswith("mup")]
    assert flat_mup.falls_monotonically is False and not flat_mup.steps[-1].loss.decided
    # one seed a width: no verdict either way
    one_seed = [r for r in rows if r.seed == SEEDS[0]]
    assert all(t.falls_monotonically is None for t in width_trends(group_configs(one_seed)))


def test_widths_are_judged_only_in_a_study_of_parametrizations():
    rows = [r for r in study(np.random.default_rng(3)) if r.parametrization == "mup"]
    findings = analyse(rows)
    assert findings.parametrizations == () and findings.width_trends == ()


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    root = tmp_path_factory.mktemp("parametrizations")
    uri, client, experiment_id, parent_id = new_store(root, "transfer")
    for r in study(np.random.default_rng(4)):
        log_run(client, experiment_id, parent_id, Spec(
            r.run_id, 2, r.n_embd, round(r.val_loss, 6), seed=r.seed, lr=r.lr,
            parametrization=r.parametrization, base_width=r.base_width, base_tuned_by=r.base_tuned_by))
    out = root / "report"
    report.main(["--experiment", "transfer", "--tracking-uri", uri, "--out", str(out)])
    return out


def test_the_report_says_which_comparisons_rest_on_a_tuned_base(reported):
    summary = (reported / "summary.md").read_text()
    assert "## Parametrizations (final val loss, best config of each)" in summary
    assert summary.count(f"This comparison rests on the base tuned by {STUDY}; fair to each side.") == 4
    assert f"| Which parametrization at llama 2x512? (on the base tuned by {STUDY}) | mup (base width 64) " \
           "llama 2x512 is better |" in summary
    assert "its loss falls with every wider width (each step decided)" in summary
    questions = [c["a"] for c in json.loads((reported / "comparisons.json").read_text())
                 if c["metric"] == "final/val_loss"]
    assert "mup (base width 64) llama 2x512" in questions


def test_runs_csv_keeps_the_tuned_base(reported):
    rows = read_csv(reported / "runs.csv")
    assert {r.base_tuned_by for r in rows if r.parametrization == "mup"} == {STUDY}
    assert {r.base_tuned_by for r in rows if r.parametrization == "sp"} == {None}
    assert len(parametrization_shapes(group_configs(rows), rows)) == len(WIDTHS)


def test_a_run_logged_before_a_null_default_key_is_a_seed_of_the_same_config():
    before = {"model.n_embd": "512", "optim.lr": "0.0005"}
    assert config_key({**before, "model.base_tuned_by": "None"}) == config_key(before)
    assert config_key({**before, "model.base_tuned_by": STUDY}) != config_key(before)
