"""Verdicts over seeds: compare() against scipy on fixed numbers, its interval and the
power calculation against known truths (simulated draws, Monte-Carlo tolerances), and the
report's comparisons.json and summary.md for synthetic runs with known group differences,
logged through the real MLflow client (test_report's helpers) into a temporary SQLite store."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from llm_sweep.core.run_record import FINAL_VAL_ACC, FINAL_VAL_LOSS, FINAL_VAL_PPL
from llm_sweep.report import cli as report
from llm_sweep.scaling.calibration import calibrate_verdicts
from llm_sweep.scaling.verdicts import (NO_SPREAD, ExtraError, compare, mean_interval, one_seed, power,
                                        sd_interval, seeds_for_power)
from test_report import Spec, log_run, new_store

KEYS = ["metric", "a", "b", "n_a", "n_b", "mean_a", "mean_b", "diff", "diff_ci", "p_value", "verdict", "dof",
        "sd", "seeds_needed", "law_sd"]
A = [3.012, 2.987, 3.031, 2.994]
B = [2.951, 2.962, 2.938, 2.970]


def test_compare_matches_scipy_and_names_the_lower_loss():
    result = compare(FINAL_VAL_LOSS, "adamw", A, "sophiag", B)
    expected_p = stats.ttest_ind(A, B, equal_var=False).pvalue
    assert result.p_value == pytest.approx(expected_p, rel=1e-12)
    assert 1e-3 < result.p_value < 1e-2  # Welch's df ~4.6 here: the pooled test would say less
    assert (result.n_a, result.n_b) == (4, 4)
    assert result.mean_a == pytest.approx(np.mean(A)) and result.mean_b == pytest.approx(np.mean(B))
    assert result.diff == pytest.approx(0.05075)
    low, high = result.diff_ci
    assert 0 < low < result.diff < high
    # Welch's own interval: the t quantile at the Welch-Satterthwaite df times the standard error.
    va, vb = np.var(A, ddof=1) / 4, np.var(B, ddof=1) / 4
    dof = (va + vb) ** 2 / (va ** 2 / 3 + vb ** 2 / 3)
    assert result.dof == pytest.approx(dof)
    assert (high - low) / 2 == pytest.approx(stats.t.ppf(0.975, dof) * np.sqrt(va + vb))
    assert result.verdict == (f"sophiag beats adamw by {result.diff:.4f} ({low:.4f} to {high:.4f}), "
                              f"p = {result.p_value:.2g}")


def test_higher_accuracy_wins_and_the_interval_turns_with_the_sides():
    loss = compare(FINAL_VAL_LOSS, "adamw", A, "sophiag", B)
    accuracy = compare(FINAL_VAL_ACC, "adamw", A, "sophiag", B)  # the same numbers as accuracies
    assert accuracy.verdict.startswith(f"adamw beats sophiag by {loss.diff:.4f}")
    assert accuracy.diff_ci == loss.diff_ci and accuracy.p_value == loss.p_value
    swapped = compare(FINAL_VAL_LOSS, "sophiag", B, "adamw", A)
    assert swapped.diff == pytest.approx(-loss.diff)
    assert swapped.verdict.startswith(f"sophiag beats adamw by {loss.diff:.4f}")
    assert swapped.p_value == pytest.approx(loss.p_value)
    assert np.allclose(swapped.diff_ci, [-loss.diff_ci[1], -loss.diff_ci[0]])


def test_no_difference_one_seed_and_no_spread():
    same = compare(FINAL_VAL_PPL, "a", [20.1, 19.8, 20.3], "b", [20.0, 20.2, 19.9])
    assert same.verdict.startswith("not distinguishable at p < 0.01 (p = ")
    assert same.p_value > 0.5 and same.diff_ci[0] < 0 < same.diff_ci[1]
    single = compare(FINAL_VAL_LOSS, "a", [2.5], "b", [3.0, 3.1, 2.9])
    assert (single.verdict, single.p_value, single.diff_ci) == ("one seed on a: no verdict", None, None)
    assert single.diff == pytest.approx(-0.5)  # the difference of the means exists; a verdict does not
    flat = compare(FINAL_VAL_LOSS, "a", [2.5, 2.5], "b", [3.0, 3.0])
    assert (flat.verdict, flat.p_value, flat.diff_ci) == (NO_SPREAD, None, None)  # never zero-width
    assert compare(FINAL_VAL_LOSS, "a", [2.5], "b", [3.0]).verdict == "one seed on a and b: no verdict"
    with pytest.raises(ValueError, match="which way is better"):
        compare("perf/mfu", "a", A, "b", B)
    with pytest.raises(ValueError, match="at least one finite value"):
        compare(FINAL_VAL_LOSS, "a", [], "b", B)


def test_the_interval_agrees_with_the_p_value():
    """The issue's example: p = 0.11 and an interval that excluded 0 cannot both be printed."""
    result = compare(FINAL_VAL_LOSS, "a", [2.00, 2.10], "b", [2.20, 2.30])
    assert result.p_value == pytest.approx(0.1056, abs=1e-3)
    assert result.diff_ci[0] < 0 < result.diff_ci[1]


@pytest.mark.parametrize("seeds", [2, 3, 5])
def test_intervals_cover_the_truth_in_simulated_comparisons(seeds):
    """Known truth: 2,000 simulated pairs per seed count. Under no gap the interval excludes 0
    at most 5% (+3 Monte-Carlo sd) and never disagrees with p < 0.05; a true gap is covered
    at least 92% (a percentile bootstrap covered 65% at 2 seeds, 80% at 3); one side's mean
    interval (the shape residual's) covers its mean 95% +- 1.5."""
    found = calibrate_verdicts(seeds, 2000, seed=seeds)
    assert found.null_excludes_zero <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / 2000)
    assert found.disagree_with_p == 0
    assert found.gap_coverage >= 0.92
    assert abs(found.mean_coverage - 0.95) <= 0.015


def test_an_extra_error_widens_the_interval_and_carries_its_dof():
    plain = compare("residual/val_loss", "a", A, "b", B)
    law = compare("residual/val_loss", "a", A, "b", B, ExtraError(variance=0.02 ** 2, dof=16))
    assert law.diff_ci[1] - law.diff_ci[0] > plain.diff_ci[1] - plain.diff_ci[0]
    assert law.p_value > plain.p_value and law.law_sd == pytest.approx(0.02)
    # Known truth: with no shape effect, a law error as large as the seeds' leaves false winners at
    # the nominal 1% when carried (treating the law as exact inflates them).
    rng = np.random.default_rng(3)
    carried = exact = 0
    for _ in range(2000):
        shift = rng.normal(0, 0.01)  # the law's error in L(a) - L(b), estimated with 16 dof below
        a, b = rng.normal(0, 0.01, 4) + shift, rng.normal(0, 0.01, 4)
        estimate = 0.01 ** 2 * rng.chisquare(16) / 16
        carried += compare("residual/val_loss", "a", a, "b", b, ExtraError(estimate, 16)).p_value < 0.01
        exact += compare("residual/val_loss", "a", a, "b", b).p_value < 0.01
    assert carried / 2000 <= 0.01 + 3 * np.sqrt(0.01 * 0.99 / 2000)
    assert exact / 2000 > 0.03


def test_mean_interval_is_students():
    x = [1.0, 1.2, 0.9]
    low, high = mean_interval(x)
    assert (high - low) / 2 == pytest.approx(stats.t.ppf(0.975, 2) * np.std(x, ddof=1) / np.sqrt(3))
    assert mean_interval([1.0]) is None and mean_interval([1.0, 1.0]) is None


def test_seeds_for_power_against_simulated_tests():
    """The seeds a side for 80% power at p < 0.01: 8 at a 2-sd gap, 5 at 3 sd; scipy's Welch
    test on other draws reaches the power at that n (and at one seed fewer, falls short)."""
    assert seeds_for_power(2.0, 1.0) == 8 and seeds_for_power(3.0, 1.0) == 5
    assert seeds_for_power(2.0, None) is None and seeds_for_power(1e-4, 1.0) is None
    rng = np.random.default_rng(11)
    for n in (7, 8):
        hits = np.mean([stats.ttest_ind(rng.normal(2.0, 1, n), rng.normal(0, 1, n), equal_var=False).pvalue < 0.01
                        for _ in range(1500)])
        assert hits == pytest.approx(power(2.0, 1.0, n), abs=0.04)
    assert power(2.0, 1.0, 8) >= 0.8 > power(2.0, 1.0, 7)


def test_sd_interval_covers_the_true_sd():
    rng = np.random.default_rng(5)
    sds = np.std(rng.normal(0, 1, (4000, 7)), axis=1, ddof=1)
    low, high = sd_interval(1.0, 6)  # the interval scales with the sd: sd * (low, high)
    assert abs(np.mean((sds * low <= 1.0) & (1.0 <= sds * high)) - 0.95) <= 0.015


# --- the report, on runs logged through MLflow ------------------------------------------------

NOISE = np.random.default_rng(7).normal(0.0, 0.01, size=(3, 4))  # seed-to-seed jitter, fixed
TRUE_GAP = 0.10  # the wider shape's true advantage over the reference and the deeper shape


def seeded(name: str, n_layer: int, n_embd: int, mean: float, jitter: np.ndarray) -> list[Spec]:
    return [Spec(f"{name}-s{seed}", n_layer, n_embd, round(mean + float(noise), 5), seed=seed)
            for seed, noise in enumerate(jitter)]


# Reference 2 x 64 and deeper 4 x 64 share a mean (no difference); wider 2 x 128 is lower by
# TRUE_GAP; each with 4 seeds. The reference's seed 0 was run twice (a rerun counts once).
# 2 x 64 and 2 x 128 also ran SophiaG with one seed each.
SPECS = [*seeded("ref", 2, 64, 3.0, NOISE[0]), *seeded("deep", 4, 64, 3.0, NOISE[1]),
         *seeded("wide", 2, 128, 3.0 - TRUE_GAP, NOISE[2]),
         Spec("ref-s0-rerun", 2, 64, round(3.0 + float(NOISE[0][0]) + 0.004, 5), seed=0),
         Spec("sophia64", 2, 64, 3.2, optimizer="sophiag"),
         Spec("sophia128", 2, 128, 3.1, optimizer="sophiag")]


@dataclass(frozen=True)
class Report:
    comparisons: list[dict]
    summary: str


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> Report:
    root = tmp_path_factory.mktemp("verdicts")
    uri, client, experiment_id, parent_id = new_store(root, "verdicts")
    for spec in SPECS:
        log_run(client, experiment_id, parent_id, spec)
    report.main(["--experiment", "verdicts", "--tracking-uri", uri, "--out", str(root / "report")])
    out = Path(root / "report")
    return Report(json.loads((out / "comparisons.json").read_text()), (out / "summary.md").read_text())


def find(report: Report, metric: str, a: str, b: str) -> dict:
    (record,) = [r for r in report.comparisons if (r["metric"], r["a"], r["b"]) == (metric, a, b)]
    return record


WIDER, DEEPER, REFERENCE = "custom 2x128 (wider)", "custom 4x64 (deeper)", "custom 2x64 (reference)"


@pytest.mark.slow
def test_every_record_has_exactly_the_keys(written):
    assert len(written.comparisons) == 3 * 5  # 3 metrics x (shapes, 2 vs reference, 2 optimizer sizes)
    for record in written.comparisons:
        assert list(record) == KEYS


@pytest.mark.slow
def test_a_large_difference_over_four_seeds_beats(written):
    record = find(written, FINAL_VAL_LOSS, WIDER, DEEPER)
    assert (record["n_a"], record["n_b"]) == (4, 4)
    assert record["p_value"] < 0.01
    low, high = record["diff_ci"]
    assert high < 0 and low < -TRUE_GAP < high  # excludes 0, holds the true difference
    assert record["diff"] == pytest.approx(NOISE[2].mean() - NOISE[1].mean() - TRUE_GAP, abs=1e-4)
    assert record["verdict"].startswith(f"{WIDER} beats {DEEPER} by 0.")
    assert f"Best wider vs best deeper: {record['verdict']}" in written.summary
    for metric in (FINAL_VAL_PPL, FINAL_VAL_ACC):  # lower ppl, higher accuracy: wider either way
        assert find(written, metric, WIDER, DEEPER)["verdict"].startswith(f"{WIDER} beats {DEEPER}")
    against = find(written, FINAL_VAL_LOSS, WIDER, REFERENCE)
    assert against["verdict"].startswith(f"{WIDER} beats {REFERENCE}")
    assert f"- {WIDER} " in written.summary and against["verdict"] in written.summary


@pytest.mark.slow
def test_no_difference_is_not_distinguishable(written):
    record = find(written, FINAL_VAL_LOSS, DEEPER, REFERENCE)
    assert record["n_b"] == 4  # the rerun of seed 0 is averaged into it, not a fifth seed
    assert record["verdict"].startswith("not distinguishable at p < 0.01")
    assert record["p_value"] >= 0.01
    low, high = record["diff_ci"]
    assert low < 0 < high
    assert f"- {DEEPER} " in written.summary


@pytest.mark.slow
def test_one_seed_has_no_verdict_and_no_p_value(written):
    for params in ("3.32M", "6.83M"):
        for metric in (FINAL_VAL_LOSS, FINAL_VAL_PPL, FINAL_VAL_ACC):
            record = find(written, metric, f"adamw ({params} params)", f"sophiag ({params} params)")
            assert (record["n_a"], record["n_b"]) == (4, 1)
            assert record["verdict"] == one_seed([f"sophiag ({params} params)"])
            assert record["p_value"] is None and record["diff_ci"] is None
    assert ("  adamw (3.32M params) vs sophiag (3.32M params): one seed on sophiag (3.32M params): no verdict"
            in written.summary)


@pytest.mark.slow
def test_the_summary_opens_on_its_verdict_table(written):
    head = written.summary.split("## Noise")[0]
    assert "## Verdicts" in head
    assert f"| Wider or deeper (the best of each)? | {WIDER} is better |" in head
    assert f"| {DEEPER} against the reference | no detectable difference |" in head
    assert "| not enough seeds |" in head and "2+ seeds a side for any verdict" in head
