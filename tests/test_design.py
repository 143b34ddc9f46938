"""The study designer: the law's compute-optimal size, designs around it, and simulated
studies through the project's own fit, whose spread follows the noise and the design."""
from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from conftest import REPO
from llm_sweep.core.errors import DataError
from llm_sweep.design import cli as design
from llm_sweep.design.inputs import law_from_fit, noise_level, read_design, realised_scatter
from llm_sweep.report.tables import read_csv, write_csv
from llm_sweep.scaling.design import Design, log_spacing
from llm_sweep.scaling.law import CHINCHILLA, Law
from llm_sweep.scaling.simulate import draw_points, simulate
from llm_sweep.scaling.fit import fit_point_estimates

CPU_STUDY = REPO / "docs" / "results" / "isoflop"
LAW = Law(E=1.5, A=40.0, B=300.0, alpha=0.35, beta=0.3, c=6.0, k=1.0)


@pytest.mark.parametrize("law", [LAW, Law(**CHINCHILLA), Law(1.0, 5.0, 900.0, 0.1, 0.55, 14.0, 0.945)])
def test_the_optimum_is_where_the_iso_flop_loss_is_lowest(law):
    for compute in (1e12, 1e15, 1e18):
        best = minimize_scalar(lambda ln_n: law.loss(math.exp(ln_n), law.tokens(compute, math.exp(ln_n))),
                               bounds=(0, 40), method="bounded", options={"xatol": 1e-10})
        assert law.n_opt(compute) == pytest.approx(math.exp(best.x), rel=1e-4)
    # N_opt grows as C^a, D_opt as C^b, a = beta / (alpha + k beta), b = 1 - k a.
    assert math.log(law.n_opt(1e16) / law.n_opt(1e12)) / math.log(1e4) == pytest.approx(law.a)
    d = [law.tokens(c, law.n_opt(c)) for c in (1e12, 1e16)]
    assert math.log(d[1] / d[0]) / math.log(1e4) == pytest.approx(law.b)


def test_a_design_is_centred_on_the_optimum_and_spans_what_was_asked():
    plan = Design.around_optimum(LAW, [1e12, 4e12, 1.6e13], shapes=7, spacing=log_spacing(7, 8), seeds=2)
    assert plan.budgets == (1e12, 4e12, 1.6e13) and plan.jobs == 42
    assert plan.compute == pytest.approx(2 * 7 * (1e12 + 4e12 + 1.6e13))
    for c in plan.budgets:
        sizes = sorted(run.params for run in plan.runs if run.compute == c)
        assert plan.span(c) == pytest.approx(8) and sizes[3] == pytest.approx(LAW.n_opt(c))
    assert "7 sizes per budget spanning 8x, 8x, 8x in N; 2 seed(s) per run: 42 runs" in plan.describe()


def test_drawn_losses_scatter_around_the_law_by_the_noise():
    plan = Design.around_optimum(LAW, [1e15], shapes=3, spacing=2, seeds=2000)
    points = draw_points(LAW, plan, 0.02, np.random.default_rng(0))
    run = plan.runs[1]
    losses = np.array([p.loss for p in points if p.params == run.params])
    assert losses.mean() == pytest.approx(LAW.loss(run.params, LAW.tokens(1e15, run.params)), abs=0.002)
    assert losses.std() == pytest.approx(0.02, rel=0.05)


def spreads(noise: float, seed: int = 0, repeats: int = 40) -> dict[str, object]:
    plan = Design.around_optimum(LAW, [1e15, 4e15, 1.6e16], shapes=7, spacing=log_spacing(7, 8), seeds=1)
    result = simulate(LAW, plan, noise, repeats, fit_point_estimates, seed=seed)
    return {f"{s.name}{s.approach}": s for s in result.spreads}


def test_without_noise_every_repeat_finds_the_truth():
    found = spreads(1e-6, repeats=10)
    assert found["a3"].median == pytest.approx(LAW.a, abs=2e-3) and found["a3"].pinned == 1
    assert found["b3"].median == pytest.approx(LAW.b, abs=2e-3) and found["a3"].failed == 0
    assert found["tokens_per_param3"].median == pytest.approx(LAW.tokens_per_param(1.6e16), rel=0.01)
    # A parabola over x1/8..x8 of an asymmetric curve is biased, not noisy (Approach 2).
    assert found["a2"].width < 0.01 and found["a2"].failed == 0


def test_more_noise_widens_the_intervals_and_pins_less():
    quiet, loud = spreads(0.005), spreads(0.04)
    for name in ("a3", "b3", "a2"):
        assert loud[name].width > 2 * quiet[name].width, name
    assert loud["tokens_per_param3"].width > quiet["tokens_per_param3"].width
    assert loud["a3"].pinned < quiet["a3"].pinned


@pytest.mark.slow
def test_the_designer_holds_when_the_truth_is_not_the_law_it_centres_on():
    """Known truth: the designer centres a design on Chinchilla's law and predicts its spread
    from it; studies drawn from another truth (alpha = beta = 0.3: every budget's minimum moves
    off the grid's centre) realise a spread within a factor 1.5 of that prediction (log terms for
    tokens/param), and the share within tolerance within 15 points."""
    assumed, truth = Law(**CHINCHILLA), Law(**{**CHINCHILLA, "alpha": 0.3, "beta": 0.3})
    plan = Design.around_optimum(assumed, [1e18, 4e18, 1.6e19, 6.4e19], 9, log_spacing(9, 16), 3)
    predicted = {(s.name, s.approach): s for s in simulate(assumed, plan, 0.01, 300, fit_point_estimates).spreads}
    realised = {(s.name, s.approach): s for s in simulate(truth, plan, 0.01, 300, fit_point_estimates, seed=1).spreads}
    for key in (("a", 3), ("b", 3), ("tokens_per_param", 3)):
        p, r = predicted[key], realised[key]
        ratio = (math.log(p.width) / math.log(r.width)) if key[0] == "tokens_per_param" else p.width / r.width
        assert 1 / 1.5 <= ratio <= 1.5, (key, ratio)
        assert abs(p.pinned - r.pinned) <= 0.15, key
        assert r.failed == 0


def test_the_command_prints_the_table_and_the_cost(capsys):
    design.main(["--budgets", "1e15,4e15", "--shapes", "5", "--span", "4", "--repeats", "10",
                 "--noise", "0.01", "--flops-per-s", "1e12", "--processes", "2"])
    out = capsys.readouterr().out
    assert "budgets 1e+15, 4e+15 FLOPs; 5 sizes per budget spanning 4x, 4x in N" in out
    assert "Chinchilla's published law" in out and "| a (N_opt ~ C^a) | 3 | 0.452 |" in out
    hours = 5 * (1e15 + 4e15) / 1e12 / 3600
    assert f"{hours:.3g} process-hours, {hours / 2:.3g} h with 2 at once" in out


def test_a_study_design_comes_from_its_runs_csv():
    plan = read_design(CPU_STUDY / "runs.csv", 1)
    budgets = {row.flops_budget for row in read_csv(CPU_STUDY / "runs.csv") if row.finished}
    assert plan.budgets == tuple(sorted(budgets))
    assert plan.jobs >= len(plan.runs) and len(plan.runs) == len({(r.compute, r.params) for r in plan.runs})


def test_the_design_reads_the_flop_budget_and_config_not_the_label(tmp_path):
    """A runs.csv with the `flops_budget` and `config` columns: its budget label is for
    reading only, and the designer finds the same study whatever the label says."""
    rows = read_csv(CPU_STUDY / "runs.csv")
    write_csv([replace(row, budget="relabelled") for row in rows], tmp_path / "runs.csv")
    assert read_design(tmp_path / "runs.csv", 1) == read_design(CPU_STUDY / "runs.csv", 1)


def test_the_law_and_seed_noise_come_from_the_fit_record(tmp_path):
    """Variable projection's law where the fit has one, else Approach 3's; the pooled seed
    noise; a file that is no fit.json is one DataError naming --law."""
    committed = json.loads((CPU_STUDY / "fit.json").read_text())
    law, varpro = law_from_fit(CPU_STUDY / "fit.json"), committed["approach3_varpro"]
    assert (law.alpha, law.beta, law.k) == (varpro["alpha"], varpro["beta"], committed["flops_per_token"]["exponent"])
    older = REPO / "tests" / "fixtures" / "fit_older_report.json"
    assert law_from_fit(older).alpha == json.loads(older.read_text())["approach3"]["alpha"]
    noise, source = noise_level("seed", CPU_STUDY / "fit.json", None, law, 0.5)
    assert noise == committed["noise"]["pooled_sd"] and "pooled seed noise" in source
    (tmp_path / "fit.json").write_text('{"approach3": {}}')
    with pytest.raises(DataError, match="--law .*fit.json: not a fit.json of report --fit"):
        law_from_fit(tmp_path / "fit.json")


def test_bad_noise_is_one_line(capsys):
    with pytest.raises(SystemExit) as exit_:
        design.main(["--budgets", "1e15,4e15", "--noise", "loud"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: --noise 'loud': expected a positive number, seed or scatter"]


def test_gap_gives_the_seeds_a_side_at_the_measured_noise_and_its_interval(capsys):
    """At the committed study's seed sd 0.0277 (6 dof), a gap of 0.05 needs 10 seeds a side; the
    ends of that sd's interval, 6 and 37."""
    design.main(["--gap", "0.05", "--law", str(REPO / "docs/results/isoflop_mup/fit.json")])
    out = capsys.readouterr().out
    assert "0.05 in final loss at p < 0.01 with 80% power: 10 seeds a side, at the seed sd 0.0277" in out
    assert "6 degrees of freedom: its 95% interval 0.0179 to 0.0611 needs 6 to 37 seeds a side" in out
    design.main(["--gap", "0.09", "--noise", "0.03"])
    assert "5 seeds a side, at the seed sd 0.0300" in capsys.readouterr().out  # a 3-sd gap


def test_gap_without_a_noise_is_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        design.main(["--gap", "0.05"])
    assert exit_info.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "--gap needs the seed noise" in line
