"""runs.csv (exact values, for further analysis) and runs.md (rounded, for reading)."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

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
