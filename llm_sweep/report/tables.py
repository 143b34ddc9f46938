"""runs.csv (exact values, for further analysis) and runs.md (rounded, for reading)."""
from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from llm_sweep.core.budget import Budget
from llm_sweep.core.config import LR_PARAM
from llm_sweep.core.errors import DataError
from llm_sweep.core.model_config import SP
from llm_sweep.report.rows import (ARCH, BASE_DEPTH, BASE_WIDTH, MODEL_NAME, N_EMBD, N_HEAD, N_LAYER,
                                   OPTIMIZER, PARAMETRIZATION, RunRow, config_key)


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
    Column("base tuned by", "base_tuned_by", lambda r: r.base_tuned_by),
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


# runs.csv only, for the programs that read it back: the exact FLOP budget and the config
# (the params config_key() keeps, as compact JSON), so neither is parsed out of a label;
# runs.md shows both through its budget and shape columns.
CSV_COLUMNS = (*COLUMNS,
               Column("FLOP budget", "flops_budget", lambda r: r.flops_budget),
               Column("config", "config", lambda r: json.dumps(dict(r.config_key), separators=(",", ":"))))


def sorted_rows(rows: Sequence[RunRow]) -> list[RunRow]:
    """Best final val loss first; runs without one (failed, killed, running) last."""
    return sorted(rows, key=lambda r: (r.val_loss is None, r.val_loss or 0.0, r.name))


def write_csv(rows: Sequence[RunRow], path: Path) -> None:
    """Values as MLflow holds them (repr of floats round-trips exactly); empty when absent."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([column.key for column in CSV_COLUMNS])
        for row in sorted_rows(rows):
            writer.writerow(["" if (v := column.value(row)) is None else v for column in CSV_COLUMNS])


# Columns every runs.csv has had; and columns an older one lacks, with the value its runs had.
REQUIRED_COLUMNS = ("model", "arch", "n_layer", "n_embd", "n_head", "optimizer", "lr", "budget",
                    "params", "seed", "run_id", "status", "val_loss")
# Measurements a runs.csv may lack (one written by hand or by another tool): empty, as for a
# run that did not log them.
OPTIONAL_COLUMNS = ("run", "experiment", "non_embedding_params", "tokens", "tokens_per_param", "tokens_per_s",
                    "mfu", "val_ppl", "val_acc")
# (Without `flops`, spent compute is unknown: a fit leaves such runs out and says so.)
LATER_COLUMNS = {"parametrization": SP, "base_width": "", "base_depth": "", "base_tuned_by": "", "flops": ""}


def read_csv(path: Path) -> list[RunRow]:
    """The runs of a runs.csv this report wrote (committed results refit without their
    MLflow store): every column back to its field."""
    with open(path, newline="") as f:
        records = [{**LATER_COLUMNS, **dict.fromkeys(OPTIONAL_COLUMNS, ""), **record} for record in csv.DictReader(f)]
    missing = [key for key in REQUIRED_COLUMNS if records and key not in records[0]]
    if not records or missing:
        raise DataError(f"{path}: not a runs.csv of report" + (f" (no {', '.join(missing)} column)"
                                                              if missing else " (no runs)"))
    rows = []
    for line, record in enumerate(records, start=2):
        try:
            rows.append(_read_row(record))
        except (ValueError, TypeError) as exc:
            raise DataError(f"{path}, line {line}: {exc}") from exc
    return rows


def _number(value: str, kind: Callable[[str], Any] = float) -> Any:
    return None if value == "" else kind(value)


def _read_row(r: Mapping[str, str]) -> RunRow:
    params, flops_budget = _config(r)
    return RunRow(r["run_id"], r["run"] or r["run_id"], r["experiment"], r["status"], r["model"], r["arch"],
                  int(r["n_layer"]), int(r["n_embd"]), int(r["n_head"]), int(r["params"]),
                  int(r["non_embedding_params"] or r["params"]),
                  r["optimizer"], float(r["lr"]), r["budget"], _number(r["seed"], int),
                  tokens=_number(r["tokens"]), tokens_per_param=_number(r["tokens_per_param"]),
                  tokens_per_s=_number(r["tokens_per_s"]), mfu=_number(r["mfu"]), val_loss=_number(r["val_loss"]),
                  val_ppl=_number(r["val_ppl"]), val_acc=_number(r["val_acc"]),
                  flops_budget=flops_budget, flops=_number(r["flops"]),
                  parametrization=r["parametrization"], base_width=_number(r["base_width"], int),
                  base_depth=_number(r["base_depth"], int), base_tuned_by=r["base_tuned_by"] or None,
                  config_key=config_key(params))


def _config(r: Mapping[str, str]) -> tuple[Mapping[str, str], Optional[float]]:
    """A run's config params and its FLOP budget, from the `config` and `flops_budget`
    columns. A runs.csv written before those columns (the committed results) has the
    columns that stand for them instead: the params are rebuilt from those (the budget's
    read back from its label), so its seeds group as MLflow's do, within the file, and its
    FLOP budget comes from them as an MLflow row's does."""
    if "config" in r and "flops_budget" in r:
        return json.loads(r["config"]), _number(r["flops_budget"])
    params = {MODEL_NAME: r["model"], ARCH: r["arch"], N_LAYER: r["n_layer"], N_EMBD: r["n_embd"],
              N_HEAD: r["n_head"], OPTIMIZER: r["optimizer"], LR_PARAM: r["lr"],
              **Budget.params_in_label(r["budget"]), PARAMETRIZATION: r["parametrization"],
              BASE_WIDTH: r["base_width"], BASE_DEPTH: r["base_depth"]}
    return params, Budget.from_params(params).cfg.flops


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
