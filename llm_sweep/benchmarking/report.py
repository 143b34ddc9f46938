"""bench.json (exact values; `python -m llm_sweep.plan --bench` reads it) and bench.md."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from llm_sweep.benchmarking.metrics import BenchRecord
from llm_sweep.config import RunConfig
from llm_sweep.hardware import device_name
from llm_sweep.models import build_model
from llm_sweep.reporting.tables import markdown_table, si

COLUMNS = ("mode", "tokens/s", "step ms", "fwd+bwd ms", "optim ms", "data ms", "MFU",
           "peak mem", "compile s")


@dataclass(frozen=True)
class BenchResult:
    summary: dict[str, Any]  # device, versions and what was run; see run_summary
    data_tokens_per_s: float  # BatchSampler.get alone, on the configured batch shape
    records: list[BenchRecord]

    def to_json(self) -> dict[str, Any]:
        return {**self.summary, "data_tokens_per_s": self.data_tokens_per_s,
                "records": [asdict(record) for record in self.records]}


def run_summary(run: RunConfig, device: torch.device, load_avg: tuple[float, float]) -> dict[str, Any]:
    """The top level of bench.json: where, with what, and what was benchmarked."""
    with torch.device("meta"):  # counts without allocating
        model = build_model(run.model)
    return {
        "device": device_name(device),
        "torch": torch.__version__,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "load_avg_1m": list(load_avg),  # before and after: the machine may be shared
        "memory": "CUDA max_memory_allocated" if device.type == "cuda" else "peak RSS of the process",
        "model": {**asdict(run.model), "params": model.num_params(),
                  "non_embedding_params": model.num_params(non_embedding=True)},
        "batch": {**asdict(run.batch), "tokens_per_step": run.batch.tokens_per_step},
        "optim": asdict(run.optim),
        "flops_per_token": model.flops_per_token(run.batch.seq_len),
        "warmup_steps": run.bench.warmup_steps,
        "steps": run.bench.steps,
    }


def _memory(n_bytes: int) -> str:
    return f"{n_bytes / 2**30:.2f} GiB" if n_bytes >= 2**30 else f"{n_bytes / 2**20:.0f} MiB"


def _row(record: BenchRecord) -> list[str]:
    return [record.mode, f"{record.tokens_per_s:,.0f}", f"{record.step_ms:,.1f}",
            f"{record.fwd_bwd_ms:,.1f}", f"{record.optim_ms:,.1f}", f"{record.data_ms:,.2f}",
            f"{100 * record.mfu:.1f}%", _memory(record.peak_mem_bytes), f"{record.compile_s:.1f}"]


def format_report(result: BenchResult) -> str:
    """Markdown: what ran, one row per mode, and the sampler's headroom."""
    s, model, batch = result.summary, result.summary["model"], result.summary["batch"]
    header = (f"{model['name']} ({model['arch']}, {si(model['params'])} params, "
              f"{si(s['flops_per_token'])} FLOPs/token) | batch {batch['micro_batch_size']} x "
              f"{batch['grad_accum']} x {batch['seq_len']} = {batch['tokens_per_step']:,} tokens/step"
              f" | {s['optim']['name']} | {s['device']} | torch {s['torch']} | {s['date']} | "
              f"load {s['load_avg_1m'][0]:.1f} -> {s['load_avg_1m'][1]:.1f}")
    table = markdown_table(COLUMNS, [_row(r) for r in result.records], [False] + [True] * 8)
    fastest = max(r.tokens_per_s for r in result.records)
    sampling = (f"sampling: BatchSampler.get gives {result.data_tokens_per_s:,.0f} tokens/s, "
                f"{result.data_tokens_per_s / fastest:,.0f}x what the fastest mode trains on")
    notes = (f"{s['steps']} timed optimizer steps after {s['warmup_steps']} warm-up; peak mem: "
             f"{s['memory']}; compile s: warm-up time beyond as many steady steps")
    return f"{header}\n\n{table}\n{sampling}\n{notes}\n"


def write_results(result: BenchResult, out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "bench.json", out_dir / "bench.md"
    json_path.write_text(json.dumps(result.to_json(), indent=2) + "\n")
    md_path.write_text(format_report(result))
    return json_path, md_path
