"""Learning rates across shapes (llm_sweep.report.learning_rates): each shape's optimum,
its transfer across widths, and whether a shape comparison was fair; on rows, and through
`python -m llm_sweep.report` on synthetic runs logged with the real MLflow client."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from llm_sweep.report import cli as report
from llm_sweep.report.learning_rates import lr_curves, lr_fairness, transfers
from llm_sweep.report.rows import RunRow, config_key
from llm_sweep.report.tables import read_csv
from test_report import Spec, log_run, new_store

LRS = tuple(5e-4 * 2**i for i in range(8))  # 5e-4 .. 6.4e-2, a factor of 2 apart
CURVATURE = 0.08  # loss per (ln lr)^2 away from the optimum


def bowl(lr: float, optimum: float, floor: float = 2.0) -> float:
    return floor + CURVATURE * math.log(lr / optimum) ** 2


def row(n_layer: int, n_embd: int, lr: float, loss: float, parametrization: str = "sp",
        seed: int = 1, base_width: int | None = None, base_tuned_by: str | None = None) -> RunRow:
    return RunRow(f"{n_layer}x{n_embd}-{lr:g}-{parametrization}-{seed}", "run", "e", "FINISHED", "custom",
                  "llama", n_layer, n_embd, n_embd // 64, 10_000, 8_000, "adamw", lr, "200 steps", seed,
                  val_loss=loss, parametrization=parametrization, base_width=base_width,
                  base_tuned_by=base_tuned_by,
                  config_key=config_key({"model.n_embd": str(n_embd), "model.n_layer": str(n_layer),
                                         "optim.lr": str(lr), "model.parametrization": parametrization}))


def test_the_optimum_is_the_parabola_vertex_between_grid_points():
    optimum = 3e-3  # between 2e-3 and 4e-3
    [curve] = lr_curves([row(2, 128, lr, bowl(lr, optimum)) for lr in LRS])
    assert curve.best.lr == 4e-3 and not curve.at_edge
    assert curve.optimum == pytest.approx(optimum, rel=1e-9)  # exact for a parabola in log(lr)
    assert curve.record()["lrs"] == list(LRS)


def test_a_best_lr_at_the_edge_is_marked_and_not_extrapolated():
    [curve] = lr_curves([row(2, 128, lr, bowl(lr, 1e-4)) for lr in LRS])  # optimum below the grid
    assert curve.at_edge and curve.optimum == LRS[0]
    [transfer] = transfers([curve, *lr_curves([row(2, 256, lr, bowl(lr, 4e-3)) for lr in LRS])])
    assert "the best lr of 2x128 is at the edge of its grid" in transfer.verdict


def test_seeds_are_averaged_and_two_lrs_are_not_a_curve():
    rows = [row(2, 64, lr, bowl(lr, 4e-3) + noise, seed=seed)
            for lr in LRS[:3] for seed, noise in ((1, 0.01), (2, -0.01))]
    [curve] = lr_curves(rows)
    assert [p.n_seeds for p in curve.points] == [2, 2, 2]
    assert curve.points[0].loss == pytest.approx(bowl(LRS[0], 4e-3))
    assert lr_curves(rows[:4]) == []  # two learning rates


def test_sp_optima_falling_with_width_do_not_transfer_and_mup_ones_do():
    rows = [row(2, width, lr, bowl(lr, 4e-3 * 64 / width)) for width in (64, 128, 256, 512) for lr in LRS]
    rows += [row(2, width, lr, bowl(lr, 4e-3 * (1.1 if width == 512 else 1.0)), "mup", base_width=64)
             for width in (64, 128, 256, 512) for lr in LRS]
    found = {t.transfer: t for t in transfers(lr_curves(rows))}
    sp, mup = found["sp"], found["mup (base width 64)"]
    assert sp.span == mup.span == 8 and sp.varied == "width"
    assert sp.shift == pytest.approx(8, rel=1e-6) and not sp.transfers
    assert mup.shift == pytest.approx(1.1, rel=1e-6) and mup.transfers
    assert "moves 8x over a 8x width range (64 to 512): it does not transfer" in sp.verdict


def test_depth_curves_form_a_depth_transfer():
    rows = [row(depth, 128, lr, bowl(lr, 4e-3), "completep") for depth in (2, 4, 8) for lr in LRS]
    [transfer] = transfers(lr_curves(rows))
    assert transfer.varied == "depth" and transfer.span == 4 and transfer.transfers


@pytest.mark.parametrize("points, kind, fair", [
    # a grid per shape, each best inside its grid
    ({"a": [row(2, 64, lr, bowl(lr, 4e-3)) for lr in LRS[2:6]],
      "b": [row(2, 128, lr, bowl(lr, 2e-3)) for lr in LRS[1:5]]}, "tuned per shape", True),
    # a grid per shape, but one best at the grid's edge
    ({"a": [row(2, 64, lr, bowl(lr, 4e-3)) for lr in LRS[2:6]],
      "b": [row(2, 128, lr, bowl(lr, 1e-4)) for lr in LRS[1:5]]}, "tuned per shape", False),
    # one shared lr in sp: the seed's case
    ({"a": [row(2, 64, 1e-3, 2.1)], "b": [row(2, 128, 1e-3, 2.0)]}, "shared untuned", False),
    # one lr transferred by muP across widths, from a base tuned by a named study
    ({"a": [row(2, 64, 4e-3, 2.1, "mup", base_width=64, base_tuned_by="base_study")],
      "b": [row(2, 128, 4e-3, 2.0, "mup", base_width=64, base_tuned_by="base_study")]}, "transferred", True),
    # ... from a base not known to be tuned: these runs cannot tell
    ({"a": [row(2, 64, 4e-3, 2.1, "mup", base_width=64)],
      "b": [row(2, 128, 4e-3, 2.0, "mup", base_width=64)]}, "transferred", None),
    # muP across depths: no promise
    ({"a": [row(2, 64, 4e-3, 2.1, "mup", base_width=64)],
      "b": [row(4, 64, 4e-3, 2.0, "mup", base_width=64)]}, "transferred", None),
    # CompleteP across depths: its promise
    ({"a": [row(2, 64, 4e-3, 2.1, "completep", base_width=64, base_tuned_by="base_study")],
      "b": [row(4, 64, 4e-3, 2.0, "completep", base_width=64, base_tuned_by="base_study")]}, "transferred", True),
    # each shape its own single lr (a preset's): cannot tell
    ({"a": [row(2, 64, 4e-3, 2.1)], "b": [row(2, 128, 2e-3, 2.0)]}, "set per shape", None),
    # one shape tuned, the other not
    ({"a": [row(2, 64, lr, bowl(lr, 4e-3)) for lr in LRS[2:6]], "b": [row(2, 128, 1e-3, 2.0)]},
     "mixed", False),
])
def test_every_way_of_setting_the_lrs_gets_its_fairness(points, kind, fair):
    fairness = lr_fairness(points)
    assert (fairness.kind, fairness.fair) == (kind, fair)
    assert ("not fair" in fairness.text) == (fair is False)


# --- the report, on runs logged through MLflow ------------------------------------------------

WIDTHS = (64, 128, 256)
SP_OPTIMUM = 8e-3  # at width 64; falls as 1/width
MUP_OPTIMUM = 6e-3  # at every width


@pytest.fixture(scope="module")
def reported(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lr_transfer")
    uri, client, experiment_id, parent_id = new_store(root, "lr_transfer")
    for width in WIDTHS:
        floor = 3.0 - 0.1 * math.log2(width / 64)
        for lr in LRS:
            for parametrization, optimum in (("sp", SP_OPTIMUM * 64 / width), ("mup", MUP_OPTIMUM)):
                log_run(client, experiment_id, parent_id, Spec(
                    f"{parametrization}-{width}-{lr:g}", 2, width, round(bowl(lr, optimum, floor), 6), lr=lr,
                    parametrization=parametrization, base_width=64 if parametrization == "mup" else None))
    out = root / "report"
    report.main(["--experiment", "lr_transfer", "--tracking-uri", uri, "--out", str(out)])
    return out


@pytest.mark.slow
def test_report_finds_each_optimum_and_the_transfer_verdicts(reported):
    written = json.loads((reported / "lr_transfer.json").read_text())
    optima = {(c["parametrization"], c["n_embd"]): c["optimum_lr"] for c in written["curves"]}
    for width in WIDTHS:
        assert optima[("sp", width)] == pytest.approx(SP_OPTIMUM * 64 / width, rel=1e-4)
        assert optima[("mup (base width 64)", width)] == pytest.approx(MUP_OPTIMUM, rel=1e-4)
    verdicts = {t["parametrization"]: t for t in written["transfers"]}
    assert verdicts["sp"]["shift"] == pytest.approx(4, rel=1e-3) and not verdicts["sp"]["transfers"]
    assert verdicts["mup (base width 64)"]["transfers"]
    assert (reported / "lr_transfer.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = (reported / "summary.md").read_text()
    assert "## Learning rate per shape" in summary
    assert "- mup (base width 64): the best lr (0.006 -> 0.006 -> 0.006) moves 1x" in summary
    assert "Learning rates: every shape ran its own grid of learning rates" in summary
    rows = (reported / "runs.csv").read_text().splitlines()
    assert "parametrization" in rows[0] and any(",mup,64," in line for line in rows[1:])


@pytest.mark.slow
def test_the_runs_csv_gives_the_curves_mlflow_gave(reported):
    """Read back from runs.csv (a committed result's only record), the runs form the same
    curves, one per shape and parametrization: the lr is left out of the config key there
    as it is in MLflow's."""
    curves = lr_curves(read_csv(reported / "runs.csv"))
    assert len(curves) == 2 * len(WIDTHS) and all(len(curve.points) == len(LRS) for curve in curves)
    optima = {(curve.transfer, curve.n_embd): curve.optimum for curve in curves}
    for width in WIDTHS:
        assert optima[("sp", width)] == pytest.approx(SP_OPTIMUM * 64 / width, rel=1e-4)
        assert optima[("mup (base width 64)", width)] == pytest.approx(MUP_OPTIMUM, rel=1e-4)
