"""The end of a sweep: a table of every job's status and final validation loss.

Each job records how it ended in its status file (llm_sweep.core.run_record), whatever the
launcher ran it on, so the table is read from disk in the launching process.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from llm_sweep.core import console
from llm_sweep.core.run_record import (REFUSED_FILE, STATUS_FAILED, STATUS_FILE, STATUS_FINISHED,
                                       SWEEP_RESULTS_FILE, read_json, read_status)


@dataclass
class JobResult:
    job_dir: Path
    overrides: list[str]
    status: str
    val_loss: Optional[float]
    error: Optional[str]


def collect_results(sweep_dir: Path) -> list[JobResult]:
    results = []
    for status_file in sorted(Path(sweep_dir).glob(f"*/{STATUS_FILE}"), key=_job_order):
        job_dir = status_file.parent
        status = read_status(job_dir) or {"status": "unreadable"}
        refused = job_dir / REFUSED_FILE
        if refused.exists() and refused.stat().st_mtime >= status_file.stat().st_mtime:
            # This sweep's job refused the folder: the status there is another config's run.
            status = read_json(refused) or {"status": STATUS_FAILED, "error": "refused its folder"}
        overrides_file = job_dir / ".hydra" / "overrides.yaml"
        overrides = list(OmegaConf.load(overrides_file)) if overrides_file.exists() else []
        results.append(JobResult(job_dir, overrides, status["status"], status.get("val_loss"),
                                 status.get("error")))
    return results


def _job_order(path: Path) -> tuple[int, str]:
    name = path.parent.name
    return (int(name), name) if name.isdigit() else (sys.maxsize, name)


def format_results(results: list[JobResult]) -> str:
    """A Markdown table; the overrides column shows what differs between jobs."""
    shared = set.intersection(*(set(r.overrides) for r in results)) if len(results) > 1 else set()
    lines = ["| job | status | val/loss | overrides | error |", "|---|---|---|---|---|"]
    for r in results:
        loss = f"{r.val_loss:.4f}" if r.val_loss is not None and math.isfinite(r.val_loss) else "-"
        varying = " ".join(o for o in r.overrides if o not in shared)
        error = (r.error or "").replace("|", "/")[:120]
        lines.append(f"| {r.job_dir.name} | {r.status} | {loss} | {varying} | {error} |")
    return "\n".join(lines)


class SweepResultsCallback(Callback):
    """Prints the jobs table after a multirun; exits non-zero only if every job failed."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        results = collect_results(sweep_dir)
        if not results:
            return
        table = format_results(results)
        (sweep_dir / SWEEP_RESULTS_FILE).write_text(table + "\n")
        finished = sum(r.status == STATUS_FINISHED for r in results)
        console.show(f"\nsweep {sweep_dir}: {finished}/{len(results)} jobs finished\n{table}")
        if all(r.status == STATUS_FAILED for r in results):
            console.error("every job of the sweep failed")
            sys.exit(1)
