"""Tables, plots and conclusions from tracked runs.

    python -m llm_sweep.report --parent RUN_ID            # a sweep's runs
    python -m llm_sweep.report --experiment NAME [--filter "params.optim.name = 'adamw'"]

Writes runs.csv, runs.md, loss_vs_params.png, loss_vs_tokens_per_param.png, curves.png,
optimizer.png and summary.md to --out; with --parent, also attaches them to the parent
run under `report/`. Selections combine: --parent with --experiment keeps the parent's
children in those experiments. With --fit, also fits compute-optimal scaling laws
(Chinchilla's Approaches 2 and 3) to the finished runs: fit.json, isoflop.png,
frontier.png and a section of summary.md.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

from llm_sweep.core import console
from llm_sweep.core.console import user_errors
from llm_sweep.core.errors import DataError
from llm_sweep.report.runs import fetch_runs, open_client
from llm_sweep.report.write import write_report

ARTIFACT_DIR = "report"


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m llm_sweep.report",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", action="append", default=[], metavar="NAME",
                        help="an experiment to read (repeat, or a comma-separated list)")
    parser.add_argument("--parent", metavar="RUN_ID", help="a sweep's parent run: report its children")
    parser.add_argument("--filter", default="", metavar="FILTER",
                        help="an MLflow search filter, e.g. \"params.optim.name = 'sophiag'\"")
    parser.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db "
                                               "in the current directory")
    parser.add_argument("--out", type=Path, default=Path("report"), help="output folder (default: report/)")
    parser.add_argument("--fit", action="store_true",
                        help="also fit compute-optimal scaling laws: fit.json, isoflop.png, frontier.png")
    args = parser.parse_args(argv)
    args.experiment = [name.strip() for given in args.experiment for name in given.split(",") if name.strip()]
    if not args.experiment and not args.parent:
        parser.error("select runs with --experiment NAME and/or --parent RUN_ID")
    return args


@user_errors
def main(argv: Optional[list[str]] = None) -> None:
    console.configure_logging()
    args = parse_args(argv)
    client, uri = open_client(args.tracking_uri, Path.cwd())
    rows = fetch_runs(client, args.experiment, args.parent, args.filter)
    source = ", ".join([*(f"experiment {name}" for name in args.experiment),
                        *([f"children of run {args.parent}"] if args.parent else [])])
    if not rows:
        raise DataError(f"no training runs in {source} at {uri}"
                        + (f" match {args.filter!r}" if args.filter else ""))
    report = write_report(rows, args.out, source)
    written = report.written
    if args.fit:
        from llm_sweep.report.fit_summary import write_fit  # scipy, only when asked for

        written += write_fit(rows, args.out, args.out / "summary.md")
    if args.parent:
        for path in written:  # only this report's files, not whatever else is in --out
            client.log_artifact(args.parent, str(path), artifact_path=ARTIFACT_DIR)
    console.show(f"{len(rows)} runs -> {args.out}/: " + ", ".join(path.name for path in written))
    for name, why in report.skipped.items():
        console.show(f"skipped {name}: {why}")

