"""`python -m llm_sweep.plan`: the arithmetic per preset for each throughput source."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from conftest import REPO
from llm_sweep.bench.results import read_bench
from llm_sweep.core.errors import DataError
from llm_sweep.models.build import build_model
from llm_sweep.plan import cli as plan
from llm_sweep.plan.presets import load_presets

THREE_HOURS_S = 3 * 3600
PRESETS = ("gpt2", "large", "noam", "normal", "tiny", "wide3", "xl")


def table_rows(text: str) -> dict[str, dict[str, str]]:
    """The printed Markdown table as {preset: {header: cell}}."""
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    headers = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = [dict(zip(headers, (cell.strip() for cell in line.strip("|").split("|")))) for line in lines[2:]]
    return {row["preset"]: row for row in rows}


def run_plan(capsys, *args: str) -> tuple[str, dict[str, dict[str, str]]]:
    plan.main(list(args))
    out = capsys.readouterr().out
    return out, table_rows(out)


@pytest.fixture(scope="module")
def sizes() -> dict[str, tuple[int, int]]:
    """(params, FLOPs per token at seq_len 512) of each preset, counted independently."""
    result = {}
    for config in load_presets():
        with torch.device("meta"):
            model = build_model(config)
        result[config.name] = (model.num_params(), model.flops_per_token(512))
    return result


def test_the_seed_run_sees_six_tokens_per_param_on_wide3(capsys, sizes):
    out, rows = run_plan(capsys, "--tokens-per-s", "100000", "--budget", "3h")
    assert set(rows) == set(PRESETS)
    assert "100,000 tokens/s for every preset" in out
    wide3 = rows["wide3"]
    assert wide3["tokens in budget"] == "1.08B"
    assert 1.08e9 / sizes["wide3"][0] == pytest.approx(6.0, abs=0.005)
    assert wide3["tokens/param"] == "6.00"
    assert wide3["compute 6ND (FLOPs)"] == f"{6 * sizes['wide3'][0] * 1.08e9:.3g}"
    for name in ("gpt2", "noam", "tiny"):
        assert float(rows[name]["tokens/param"]) == pytest.approx(1.08e9 / sizes[name][0], rel=5e-3)
    # 9.87 tokens/param (noam) is the closest to 20; 6.00 (wide3) to 6.
    assert rows["noam"]["mark"] == "nearest ~20 (Chinchilla)"
    assert wide3["mark"] == "nearest ~6 (seed)"
    assert [name for name, row in rows.items() if row["mark"]] == ["noam", "wide3"]
    assert rows["tiny"]["note"] == "seq_len 512 > max_seq_len 256"


def test_mfu_on_a_peak_gives_each_preset_its_own_rate(capsys, sizes):
    out, rows = run_plan(capsys, "--mfu", "0.5", "--peak-flops", "989e12", "--budget", "90m",
                         "--presets", "noam,wide3,xl")
    assert list(rows) == ["noam", "wide3", "xl"]
    for name, row in rows.items():
        params, flops_per_token = sizes[name]
        tokens_per_s = 0.5 * 989e12 / flops_per_token
        assert float(row["tokens/s"].replace(",", "")) == pytest.approx(tokens_per_s, abs=0.5)
        assert float(row["tokens/param"]) == pytest.approx(tokens_per_s * 5400 / params, rel=5e-3)


def test_default_source_is_the_seed_a100_run(capsys, sizes):
    out, rows = run_plan(capsys, "--presets", "wide3")
    assert "MFU 0.36 of 312 TFLOP/s (default: the seed's A100 run)" in out
    tokens_per_s = 0.36 * 312e12 / sizes["wide3"][1]
    assert tokens_per_s == pytest.approx(98_284, abs=1)  # the seed's "~100k tokens/s"
    assert rows["wide3"]["tokens/s"] == f"{tokens_per_s:,.0f}"


def test_bench_file_lends_its_best_mode(capsys, sizes, tmp_path):
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"flops_per_token": 2e9, "records": [
        {"mode": "eager-fp32", "tokens_per_s": 20000.0, "mfu": 0.2},
        {"mode": "compile-bf16", "tokens_per_s": 60000.0, "mfu": 0.4},  # implies a 300 TFLOP/s peak
    ]}))
    result = read_bench(bench)
    assert (result.mode, result.mfu, result.peak_flops) == ("compile-bf16", 0.4, 60000.0 * 2e9 / 0.4)
    out, rows = run_plan(capsys, "--bench", str(bench), "--presets", "noam")
    assert "MFU 0.400 of 300 TFLOP/s, the best mode (compile-bf16)" in out
    expected = 0.4 * 3e14 / sizes["noam"][1]
    assert rows["noam"]["tokens/s"] == f"{expected:,.0f}"


def test_bench_without_usable_records_is_an_error(tmp_path):
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps([{"mode": "eager-fp32", "tokens_per_s": 1000.0}]))
    with pytest.raises(DataError, match="no record with tokens_per_s, mfu and flops_per_token"):
        read_bench(bench)


@pytest.mark.slow
def test_probe_measures_real_steps(capsys, tmp_path):
    table = tmp_path / "plan.md"
    out, rows = run_plan(capsys, "--probe", "--presets", "tiny", "--device", "cpu", "--seq-len", "32",
                         "--batch-size", "2", "--probe-steps", "1", "--budget", "60s", "--out", str(table))
    tokens_per_s = float(rows["tiny"]["tokens/s"].replace(",", ""))
    assert tokens_per_s > 0
    assert "measured: 1 eager AdamW steps of 2 x 32 tokens, bf16, on cpu" in out
    assert table.read_text() == out


def test_probe_skips_a_preset_whose_context_is_too_short(capsys):
    out, rows = run_plan(capsys, "--probe", "--presets", "tiny", "--device", "cpu", "--seq-len", "512")
    assert rows["tiny"]["tokens/s"] == "-" and rows["tiny"]["tokens/param"] == "-"
    assert rows["tiny"]["note"] == "not probed: seq_len 512 > max_seq_len 256"


def test_unknown_preset_names_the_known_ones(capsys):
    with pytest.raises(SystemExit) as exit_info:
        plan.main(["--presets", "tiny,huge"])
    assert exit_info.value.code == 2
    assert "no preset huge; known: gpt2, large, noam" in capsys.readouterr().err


# --- plan --fit: the compute-optimal model from a scaling-law fit ------------------------------

@pytest.fixture(scope="module")
def chinchilla_fit(tmp_path_factory):
    """fit.json of synthetic runs that follow Chinchilla's L(N, D) (tests/test_fit.py)."""
    from test_fit import as_points, optimal_params, synthetic_runs

    from llm_sweep.scaling.fit import fit_scaling

    path = tmp_path_factory.mktemp("fit") / "fit.json"
    path.write_text(json.dumps(fit_scaling(as_points(synthetic_runs(noise=0.001)), resamples=20).to_json()))
    return path, optimal_params


def fit_plan_numbers(out: str) -> tuple[float, int]:
    """(N_opt, the shape's parameters) as printed."""
    n_opt = re.search(r"Compute-optimal \(.*\): N (\S+) parameters", out).group(1)
    shape = re.search(r"^Shape: .*: ([\d,]+) params", out, re.MULTILINE).group(1)
    scale = {"k": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}
    return float(n_opt[:-1]) * scale[n_opt[-1]], int(shape.replace(",", ""))


def test_plan_from_a_fit_prints_a_shape_of_the_optimal_size(capsys, chinchilla_fit):
    path, optimal_params = chinchilla_fit
    out, rows = run_plan(capsys, "--fit", str(path), "--flops", "1e20", "--presets", "noam,wide3")
    n_opt, shape_params = fit_plan_numbers(out)
    assert "Approach 3, the fitted L(N, D)" in out
    assert n_opt == pytest.approx(optimal_params(1e20), rel=0.1)  # the true optimum
    assert shape_params == pytest.approx(n_opt, rel=0.1)
    n_layer, n_embd, n_head = map(int, re.search(r"n_layer=(\d+) n_embd=(\d+) n_head=(\d+)", out).groups())
    assert n_embd == 64 * n_head and 16 <= n_embd / n_layer <= 256
    assert list(rows) == ["noam", "wide3"] and float(rows["wide3"]["tokens/param"]) > 0


def test_plan_from_a_fit_takes_its_compute_from_a_time_budget(capsys, chinchilla_fit):
    path, _ = chinchilla_fit
    out, _ = run_plan(capsys, "--fit", str(path), "--budget", "3h", "--mfu", "0.5", "--peak-flops", "1e15")
    assert f"C = {0.5 * 1e15 * THREE_HOURS_S:.3g} FLOPs" in out
    out, _ = run_plan(capsys, "--fit", str(path), "--budget", "3h", "--tokens-per-s", "100000")
    compute = float(re.search(r"C = (\S+) FLOPs", out).group(1))
    n_opt, _ = fit_plan_numbers(out)
    assert compute == pytest.approx(1e5 * THREE_HOURS_S * 6 * n_opt, rel=0.01)  # 6 N per token


def test_plan_from_a_broken_fit_is_one_line_and_exit_code_2(capsys, tmp_path):
    broken = tmp_path / "fit.json"
    broken.write_text(json.dumps({"approach2": {}}))
    with pytest.raises(SystemExit) as exit_info:
        plan.main(["--fit", str(broken), "--flops", "1e18"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --fit ") and "not a fit.json" in err and "\n" not in err


def test_a_throughput_whose_optimum_outruns_its_compute_is_one_line(capsys):
    """The committed CPU fit has a = 1.24 with k = 0.945: N_opt grows faster than the compute a
    fixed token rate buys it, so no compute solves C = rate x time x c N_opt(C)^k."""
    fit = REPO / "docs" / "results" / "isoflop" / "fit.json"
    with pytest.raises(SystemExit) as exit_info:
        plan.main(["--fit", str(fit), "--tokens-per-s", "30000", "--budget", "3h", "--tokenizer", "bytes",
                   "--seq-len", "128"])
    assert exit_info.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: --tokens-per-s with this fit has no compute-optimal run")
    assert "k x a = 0.945 x 1.24 >= 1" in line and "--flops" in line


def test_the_fitted_compute_range_includes_its_own_ends():
    from llm_sweep.scaling.fit import outside_factor

    lo, hi = 1e12, 6.25e12
    assert outside_factor(float(np.exp(np.log(hi))), lo, hi) == 1.0  # not "1.0x outside"
    assert outside_factor(float(np.exp(np.log(lo))), lo, hi) == 1.0
    assert outside_factor(1.25e13, lo, hi) == pytest.approx(2.0)
    assert outside_factor(1e11, lo, hi) == pytest.approx(10.0)
