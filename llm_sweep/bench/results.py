"""bench.json (exact values; `python -m llm_sweep.plan --bench` reads it back) and bench.md."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import torch

from llm_sweep.bench.metrics import BenchRecord
from llm_sweep.core.config import RunConfig
from llm_sweep.core.errors import DataError
from llm_sweep.core.size import flops_per_token, param_count
from llm_sweep.core.world import World
from llm_sweep.hardware import device_name
from llm_sweep.report.tables import markdown_table, si

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


def run_summary(run: RunConfig, device: torch.device, load_avg: tuple[float, float],
                world: World = World()) -> dict[str, Any]:
    """The top level of bench.json: where, with what, and what was benchmarked."""
    return {
        "device": device_name(device),
        "world_size": world.world_size,  # processes (DDP-wrapped when started by torchrun)
        "ddp": world.distributed,
        "torch": torch.__version__,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "load_avg_1m": list(load_avg),  # before and after: the machine may be shared
        "memory": "CUDA max_memory_allocated" if device.type == "cuda" else "peak RSS of the process",
        # what packing several trials on one GPU divides (llm_sweep.sweeping.packing)
        "device_memory_bytes": (torch.cuda.get_device_properties(device).total_memory
                                if device.type == "cuda" else None),
        "loss_chunks": run.loss_chunks,
        "model": {**asdict(run.model), "params": param_count(run.model),
                  "non_embedding_params": param_count(run.model, non_embedding=True)},
        "batch": {**asdict(run.batch), "tokens_per_step": run.batch.tokens_per_step},
        "optim": asdict(run.optim),
        "flops_per_token": flops_per_token(run.model, run.batch.seq_len),
        "warmup_steps": run.bench.warmup_steps,
        "steps": run.bench.steps,
    }


def _memory(n_bytes: int) -> str:
    return f"{n_bytes / 2**30:.2f} GiB" if n_bytes >= 2**30 else f"{n_bytes / 2**20:.0f} MiB"


def _row(record: BenchRecord) -> list[str]:
    return [record.mode, f"{record.tokens_per_s:,.0f}", f"{record.step_ms:,.1f}",
            f"{record.fwd_bwd_ms:,.1f}", f"{record.optim_ms:,.1f}", f"{record.data_ms:,.2f}",
            "-" if record.mfu is None else f"{100 * record.mfu:.1f}%", _memory(record.peak_mem_bytes), f"{record.compile_s:.1f}"]


def format_report(result: BenchResult) -> str:
    """Markdown: what ran, one row per mode, and the sampler's headroom."""
    s, model, batch = result.summary, result.summary["model"], result.summary["batch"]
    header = (f"{model['name']} ({model['arch']}, {si(model['params'])} params, "
              f"{si(s['flops_per_token'])} FLOPs/token) | batch {batch['micro_batch_size']} x "
              f"{batch['grad_accum']} x {batch['seq_len']} = {batch['tokens_per_step']:,} tokens/step"
              f" | {s['optim']['name']} | {s['device']}"
              + (f" | DDP over {s['world_size']} process(es)" if s.get("ddp") else "")
              + f" | torch {s['torch']} | {s['date']} | "
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


@dataclass(frozen=True)
class BenchThroughput:
    """What a plan takes from a bench: the fastest mode's MFU and the peak it implies."""

    mode: str
    mfu: float
    peak_flops: float  # implied: tokens/s x FLOPs per token / MFU
    compile_s: Optional[float] = None  # its warm-up time beyond as many steady steps


def read_bench(path: Path) -> BenchThroughput:
    """The fastest mode (most tokens/s) of a bench.json: a list of records, or an object with
    `records`; each record has mode, tokens_per_s, mfu and flops_per_token (or the object
    has flops_per_token)."""
    try:
        data: Any = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"--bench {path}: {exc}") from exc
    records = data if isinstance(data, list) else data.get("records", [])
    shared = {} if isinstance(data, list) else data
    usable = [r for r in records if r.get("tokens_per_s") and r.get("mfu")
              and (r.get("flops_per_token") or shared.get("flops_per_token"))]
    if not usable:
        raise DataError(f"--bench {path}: no record with tokens_per_s, mfu and flops_per_token")
    best = max(usable, key=lambda r: r["tokens_per_s"])
    flops_per_token = best.get("flops_per_token") or shared["flops_per_token"]
    compile_s = best.get("compile_s")
    return BenchThroughput(str(best.get("mode", "?")), float(best["mfu"]),
                           best["tokens_per_s"] * flops_per_token / best["mfu"],
                           float(compile_s) if compile_s is not None else None)
