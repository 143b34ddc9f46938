"""Tables, plots and conclusions from tracked runs.

    python -m llm_sweep.report --parent RUN_ID            # a sweep's runs
    python -m llm_sweep.report --experiment NAME [--filter "params.optim.name = 'adamw'"]

Writes runs.csv, runs.md, loss_vs_params.png, loss_vs_tokens_per_param.png, curves.png,
optimizer.png, comparisons.json and summary.md to --out (and, where a shape was run at three
or more learning rates, lr_transfer.json and lr_transfer.png: each shape's best learning
rate and whether it transfers across widths and depths); with --parent, also attaches them
to the parent run under `report/`. Selections combine: --parent with --experiment keeps the parent's
children in those experiments. With --fit, also fits compute-optimal scaling laws
(Chinchilla's Approaches 2 and 3) to the finished runs: fit.json, isoflop.png,
frontier.png and a section of summary.md. With --law FIT.json (the fit.json of an
iso-FLOP study of the same family), each shape comparison is split into what the change
in parameters and in tokens explains through the fitted L(N, D) and what is left for
shape: a section of summary.md, shape_residuals.json, and verdicts in comparisons.json.
"""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from llm_sweep.core import console
from llm_sweep.core.console import user_errors
from llm_sweep.core.errors import DataError
from llm_sweep.report.rows import RunRow
from llm_sweep.report.runs import fetch_runs, open_client
from llm_sweep.report.shape_summary import load_law, write_shape_effects
from llm_sweep.report.tables import read_csv
from llm_sweep.report.write import Extra, write_report, write_summary

if TYPE_CHECKING:
    from mlflow import MlflowClient

ARTIFACT_DIR = "report"


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m llm_sweep.report",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", action="append", default=[], metavar="NAME",
                        help="an experiment to read (repeat, or a comma-separated list)")
    parser.add_argument("--parent", metavar="RUN_ID", help="a sweep's parent run: report its children")
    parser.add_argument("--runs-csv", type=Path, metavar="RUNS.csv",
                        help="instead of MLflow: the runs.csv of an earlier report (committed results)")
    parser.add_argument("--filter", default="", metavar="FILTER",
                        help="an MLflow search filter, e.g. \"params.optim.name = 'sophiag'\"")
    parser.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db "
                                               "in the current directory")
    parser.add_argument("--out", type=Path, default=Path("report"), help="output folder (default: report/)")
    parser.add_argument("--fit", action="store_true",
                        help="also fit compute-optimal scaling laws: fit.json, isoflop.png, frontier.png")
    parser.add_argument("--law", type=Path, metavar="FIT.json",
                        help="a fit.json of an iso-FLOP study of the same family: split each shape "
                             "comparison into parameters, tokens and shape (shape_residuals.json)")
    args = parser.parse_args(argv)
    args.experiment = [name.strip() for given in args.experiment for name in given.split(",") if name.strip()]
    if args.runs_csv and (args.experiment or args.parent or args.filter):
        parser.error("--runs-csv reads its runs from the file: no --experiment, --parent or --filter")
    if not args.experiment and not args.parent and not args.runs_csv:
        parser.error("select runs with --experiment NAME and/or --parent RUN_ID, or --runs-csv FILE")
    return args


def _tracked_runs(args: argparse.Namespace) -> tuple["MlflowClient", list[RunRow], str]:
    client, uri = open_client(args.tracking_uri, Path.cwd())
    rows = fetch_runs(client, args.experiment, args.parent, args.filter)
    source = ", ".join([*(f"experiment {name}" for name in args.experiment),
                        *([f"children of run {args.parent}"] if args.parent else [])])
    if not rows:
        raise DataError(f"no training runs in {source} at {uri}"
                        + (f" match {args.filter!r}" if args.filter else ""))
    return client, rows, source


@user_errors
def main(argv: Optional[list[str]] = None) -> None:
    console.configure_logging()
    args = parse_args(argv)
    law = load_law(args.law) if args.law else None  # a bad file fails before any run is read
    if args.runs_csv:
        client, rows, source = None, read_csv(args.runs_csv), str(args.runs_csv)
    else:
        client, rows, source = _tracked_runs(args)
    report = write_report(rows, args.out, source)
    written, extra = report.written, Extra()
    if args.fit:
        from llm_sweep.report.fit_summary import write_fit  # scipy, only when asked for

        try:
            fit, fit_text, files = write_fit(rows, args.out)
        except DataError:  # too few runs to fit: the rest of the report still stands
            write_summary(rows, report, args.out, source, extra)
            raise
        written, extra = written + files, replace(extra, fit=fit, fit_section=fit_text)
    if law is not None:
        shape_text, splits, files = write_shape_effects(report.findings, args.law, law, args.out)
        written, extra = written + files, replace(extra, shape_section=shape_text, shape_splits=tuple(splits))
    written += write_summary(rows, report, args.out, source, extra)
    if args.parent:
        for path in written:  # only this report's files, not whatever else is in --out
            client.log_artifact(args.parent, str(path), artifact_path=ARTIFACT_DIR)
    console.show(f"{len(rows)} runs -> {args.out}/: " + ", ".join(path.name for path in written))
    for name, why in report.skipped.items():
        console.show(f"skipped {name}: {why}")

