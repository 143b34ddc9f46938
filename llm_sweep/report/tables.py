"""runs.csv (exact values, for further analysis) and runs.md (rounded, for reading)."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from llm_sweep.core.budget import Budget
from llm_sweep.core.errors import DataError

if TYPE_CHECKING:  # rows come from MLflow; the bench formats its tables without it
    from llm_sweep.report.runs import RunRow


@dataclass(frozen=True)
class Column:
    header: str  # the runs.md header; the csv header is `key`
    key: str
    value: Callable[[RunRow], Any]
    text: Callable[[Any], str] = str


def si(value: float) -> str:
    """1.08B, 6.96M, 12.3k."""
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


def ratio(value: float) -> str:
    """Three significant digits, without an exponent up to a thousand: 0.0123, 6.00, 155, 4,018."""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:#.3g}".rstrip(".")


def fixed(digits: int) -> Callable[[float], str]:
    return lambda value: f"{value:.{digits}f}"


COLUMNS = (
    Column("run", "run", lambda r: r.name),
    Column("model", "model", lambda r: r.preset),
    Column("arch", "arch", lambda r: r.arch),
    Column("n_layer", "n_layer", lambda r: r.n_layer),
    Column("n_embd", "n_embd", lambda r: r.n_embd),
    Column("n_head", "n_head", lambda r: r.n_head),
    Column("params", "params", lambda r: r.params, si),
    Column("non-emb params", "non_embedding_params", lambda r: r.non_embedding_params, si),
    Column("optimizer", "optimizer", lambda r: r.optimizer),
    Column("lr", "lr", lambda r: r.lr, lambda v: f"{v:.3g}"),
    Column("parametrization", "parametrization", lambda r: r.parametrization),
    Column("base width", "base_width", lambda r: r.base_width),
    Column("base depth", "base_depth", lambda r: r.base_depth),
    Column("budget", "budget", lambda r: r.budget),
    Column("seed", "seed", lambda r: r.seed),
    Column("tokens", "tokens", lambda r: r.tokens, si),
    Column("tokens/param", "tokens_per_param", lambda r: r.tokens_per_param, ratio),
    Column("tokens/non-emb param", "tokens_per_non_embedding_param",
           lambda r: r.tokens_per_non_embedding_param, ratio),
    Column("tokens/s", "tokens_per_s", lambda r: r.tokens_per_s, lambda v: f"{v:,.0f}"),
    Column("MFU", "mfu", lambda r: r.mfu, lambda v: f"{100 * v:.1f}%"),
    Column("val loss", "val_loss", lambda r: r.val_loss, fixed(4)),
    Column("val ppl", "val_ppl", lambda r: r.val_ppl, fixed(2)),
    Column("val acc", "val_acc", lambda r: r.val_acc, fixed(4)),
    Column("FLOPs", "flops", lambda r: r.flops, lambda v: f"{v:.3g}"),
    Column("status", "status", lambda r: r.status),
    Column("experiment", "experiment", lambda r: r.experiment),
    Column("run id", "run_id", lambda r: r.run_id),
)


def sorted_rows(rows: Sequence[RunRow]) -> list[RunRow]:
    """Best final val loss first; runs without one (failed, killed, running) last."""
    return sorted(rows, key=lambda r: (r.val_loss is None, r.val_loss or 0.0, r.name))


def write_csv(rows: Sequence[RunRow], path: Path) -> None:
    """Values as MLflow holds them (repr of floats round-trips exactly); empty when absent."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([column.key for column in COLUMNS])
        for row in sorted_rows(rows):
            writer.writerow(["" if (v := column.value(row)) is None else v for column in COLUMNS])


# The columns a run's config is made of: runs equal in all of them are seeds of one config.
CONFIG_COLUMNS = ("model", "arch", "n_layer", "n_embd", "n_head", "optimizer", "lr", "budget")
# Columns a runs.csv written before they existed lacks, and the value such a run had.
LATER_COLUMNS = {"parametrization": "sp", "base_width": "", "base_depth": ""}


def read_csv(path: Path) -> list[RunRow]:
    """The runs of a runs.csv this report wrote (committed results refit without their
    MLflow store): every column back to its field; `flops` (spent compute) is required."""
    from llm_sweep.report.runs import RunRow  # the row type at run time; MLflow for it too

    with open(path, newline="") as f:
        records = [{**LATER_COLUMNS, **record} for record in csv.DictReader(f)]
    missing = [key for key in (*CONFIG_COLUMNS, "flops", "params", "seed", "run_id") if records
               and key not in records[0]]
    if not records or missing:
        raise DataError(f"{path}: not a runs.csv of report" + (f" (no {', '.join(missing)} column)"
                                                              if missing else " (no runs)"))
    number = lambda value, kind=float: kind(value) if value != "" else None
    return [RunRow(r["run_id"], r["run"], r["experiment"], r["status"], r["model"], r["arch"], int(r["n_layer"]),
                   int(r["n_embd"]), int(r["n_head"]), int(r["params"]), int(r["non_embedding_params"]),
                   r["optimizer"], float(r["lr"]), r["budget"], number(r["seed"], int),
                   tokens=number(r["tokens"]), tokens_per_param=number(r["tokens_per_param"]),
                   tokens_per_s=number(r["tokens_per_s"]), mfu=number(r["mfu"]), val_loss=number(r["val_loss"]),
                   val_ppl=number(r["val_ppl"]), val_acc=number(r["val_acc"]),
                   flops_budget=Budget.flops_in_label(r["budget"]), flops=number(r["flops"]),
                   parametrization=r["parametrization"], base_width=number(r["base_width"], int),
                   base_depth=number(r["base_depth"], int),
                   config_key=tuple((key, r[key]) for key in (*CONFIG_COLUMNS, *LATER_COLUMNS)))
            for r in records]


def _cell(column: Column, row: RunRow) -> str:
    value: Optional[Any] = column.value(row)
    return "-" if value is None else column.text(value).replace("|", "\\|")


def markdown_table(headers: Sequence[str], cells: Sequence[Sequence[str]],
                   right_aligned: Sequence[bool]) -> str:
    align = ["---:" if right else "---" for right in right_aligned]
    return "\n".join("| " + " | ".join(line) + " |" for line in [headers, align, *cells]) + "\n"


def write_markdown(rows: Sequence[RunRow], path: Path) -> None:
    ordered = sorted_rows(rows)
    cells = [[_cell(column, row) for column in COLUMNS] for row in ordered]
    numeric = [any(isinstance(column.value(row), (int, float)) for row in ordered) for column in COLUMNS]
    path.write_text(markdown_table([column.header for column in COLUMNS], cells, numeric))
