"""All report files for a set of runs, written into one folder, each by one function."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from llm_sweep.report import plots
from llm_sweep.report.analysis import Findings, analyse
from llm_sweep.report.findings import summary_markdown
from llm_sweep.report.rows import RunRow
from llm_sweep.report.shape_residuals import GapSplit
from llm_sweep.report.tables import write_csv, write_markdown
from llm_sweep.report.verdict_table import finding_questions, fit_rows, shape_questions, verdict_table
from llm_sweep.scaling.fit_record import FitResult


@dataclass(frozen=True)
class Report:
    findings: Findings
    written: tuple[Path, ...]
    skipped: dict[str, str]  # file name -> why it was not drawn


SKIP_REASONS = {
    "loss_vs_params.png": "no wider or deeper shape than the reference was run",
    "loss_vs_tokens_per_param.png": "no finished run logged its tokens",
    "curves.png": "no run logged val/loss",
    "optimizer.png": "no model size was run with both AdamW and SophiaG",
    "lr_transfer.png": "no shape was run at three or more learning rates",
}


def write_report(rows: Sequence[RunRow], out_dir: Path, source: str) -> Report:
    out_dir.mkdir(parents=True, exist_ok=True)
    findings = analyse(rows)
    write_csv(rows, out_dir / "runs.csv")
    write_markdown(rows, out_dir / "runs.md")
    figures = {
        "loss_vs_params.png": lambda path: plots.plot_loss_vs_params(
            findings.shapes, findings.budget, path),
        "loss_vs_tokens_per_param.png": lambda path: plots.plot_loss_vs_tokens_per_param(
            findings.compared, findings.lowest, findings.budget, path),
        "curves.png": lambda path: plots.plot_curves(rows, path),
        "optimizer.png": lambda path: plots.plot_optimizers(findings.optimizers, path),
        "lr_transfer.png": lambda path: plots.plot_lr_transfer(findings.lr_curves, path),
    }
    written = [out_dir / "runs.csv", out_dir / "runs.md"]
    skipped = {}
    for name, draw in figures.items():
        if draw(out_dir / name):
            written.append(out_dir / name)
        else:
            (out_dir / name).unlink(missing_ok=True)  # not a stale figure from an earlier report
            skipped[name] = SKIP_REASONS[name]
    lr_transfer = out_dir / "lr_transfer.json"
    if findings.lr_curves:
        lr_transfer.write_text(json.dumps({
            "curves": [curve.record() for curve in findings.lr_curves],
            "transfers": [transfer.record() for transfer in findings.lr_transfers]}, indent=1,
            allow_nan=False) + "\n")
        written.append(lr_transfer)
    else:
        lr_transfer.unlink(missing_ok=True)
    return Report(findings, tuple(written), skipped)


@dataclass(frozen=True)
class Extra:
    """What report --fit and --law add to summary.md and comparisons.json."""

    fit: Optional[FitResult] = None
    fit_section: str = ""
    shape_section: str = ""
    shape_splits: tuple[GapSplit, ...] = ()


def write_summary(rows: Sequence[RunRow], report: Report, out_dir: Path, source: str,
                  extra: Extra = Extra()) -> tuple[Path, ...]:
    """summary.md (its verdict table first) and comparisons.json: every comparison, the
    shape verdicts of --law included. The one writer of both files."""
    findings = report.findings
    comparisons = [*findings.comparisons, *(split.shape for split in extra.shape_splits)]
    records = out_dir / "comparisons.json"
    records.write_text(json.dumps([c.record() for c in comparisons], indent=1, allow_nan=False) + "\n")
    table = verdict_table([*finding_questions(findings), *shape_questions(extra.shape_splits)],
                          fit_rows(extra.fit) if extra.fit else ())
    sections = [section for section in (extra.fit_section, extra.shape_section) if section]
    summary = out_dir / "summary.md"
    summary.write_text(summary_markdown(rows, findings, source, report.skipped, table, sections))
    return records, summary
