"""What `python -m llm_sweep.bench.packing` makes of its trials' bench.json files: one row per
packing and mode (packing.md, packing.json), and every trial's own records beside it.

A packing's trials time their steps together (the barrier of packing_barrier), but not for
exactly the same seconds: its throughput is over the window where all of them were timing,
from the latest start to the earliest end. A trial's tokens in that window count each
timed step's tokens spread evenly over the step's own wall time.
"""
from __future__ import annotations

import json
from pathlib import Path
from statistics import mean
from typing import Any, Optional, Sequence

from llm_sweep.report.tables import markdown_table, si

COLUMNS = ("trials", "mode", "tokens/s", "per trial", "speed-up", "MFU", "peak mem per trial",
           "overlap s", "threads per trial")
TRIAL_COLUMNS = ("trials", "trial", "shape", "mode", "tokens/s", "in overlap", "step ms",
                 "peak mem", "threads", "timed from s", "to s")


def tokens_in_window(window: dict[str, Any], tokens_per_step: int, start: float, end: float) -> float:
    """The tokens of a trial's timed steps (`window`: a bench.json `timed_windows` entry) that
    fall within [start, end], each step's tokens spread evenly over its wall time."""
    ends = window["step_ends_unix"]
    total = 0.0
    for step_start, step_end in zip([window["start_unix"], *ends[:-1]], ends):
        if step_end > step_start:
            inside = max(0.0, min(step_end, end) - max(step_start, start))
            total += tokens_per_step * inside / (step_end - step_start)
    return total


def group_rates(group: Sequence[dict[str, Any]], mode_index: int) -> dict[str, Any]:
    """The common window of trials started together and each one's tokens/s and FLOP/s in it
    (None where the windows do not overlap)."""
    windows = [trial["timed_windows"][mode_index] for trial in group]
    start, end = max(w["start_unix"] for w in windows), min(w["end_unix"] for w in windows)
    together = all((w["barrier"] or {}).get("arrived_at_start", len(group)) >= len(group) for w in windows)
    if end <= start:
        return {"start": start, "end": end, "overlap_s": end - start, "together": False,
                "tokens_per_s": [None] * len(group), "flops_per_s": [None] * len(group)}
    rates = [tokens_in_window(w, t["batch"]["tokens_per_step"], start, end) / (end - start)
             for w, t in zip(windows, group)]
    flops = [rate * t["records"][mode_index]["flops_per_token"] for rate, t in zip(rates, group)]
    return {"start": start, "end": end, "overlap_s": end - start, "together": together,
            "tokens_per_s": rates, "flops_per_s": flops}


def device_peaks(trials: Sequence[dict[str, Any]]) -> list[Optional[float]]:
    """Per mode, the device's peak FLOP/s: what the k=1 benches, with the whole device, measured
    against (the GPU's table entry; on a CPU the probe on all its threads). None if unknown."""
    alone = [t for t in trials if t["k"] == 1]
    peaks = []
    for m in range(len(alone[0]["records"])):
        values = [t["records"][m]["peak_flops"] for t in alone]
        peaks.append(None if None in values else max(values))
    return peaks


def _mean(values: Sequence[Optional[float]]) -> Optional[float]:
    return None if not values or None in values else mean(values)


def packing_row(k: int, m: int, groups: list[list[dict]], stats: list[dict], alone: dict[str, float],
                peak: Optional[float]) -> dict[str, Any]:
    """Packing k's row for mode m: means over its groups (several only at k=1 with a grid)."""
    members = [t for g in groups for t in g]
    totals = [None if None in s["tokens_per_s"] else sum(s["tokens_per_s"]) for s in stats]
    flops = [None if None in s["flops_per_s"] else sum(s["flops_per_s"]) for s in stats]
    speedups = []
    for group, s in zip(groups, stats):
        solo = [alone.get(json.dumps(t["shape"])) for t in group]
        ok = None not in solo and None not in s["tokens_per_s"] and 0.0 not in solo
        speedups.append(sum(r / a for r, a in zip(s["tokens_per_s"], solo)) if ok else None)
    total, flops_per_s = _mean(totals), _mean(flops)
    return {"k": k, "mode": members[0]["records"][m]["mode"], "tokens_per_s": total,
            "tokens_per_s_per_trial": None if total is None else total / len(groups[0]),
            "speedup": _mean(speedups), "flops_per_s": flops_per_s,
            "mfu": None if flops_per_s is None or not peak else flops_per_s / peak,
            "peak_mem_bytes_per_trial": max(t["records"][m]["peak_mem_bytes"] for t in members),
            "overlap_s": min(s["overlap_s"] for s in stats), "together": all(s["together"] for s in stats),
            "threads_per_trial": sorted({t["threads"] for t in members}), "groups": len(groups)}


def summarize(trials: list[dict[str, Any]], meta: dict[str, Any]) -> dict[str, Any]:
    """packing.json: `meta`, the rows (packing by packing, mode by mode) and every trial, each
    with its rate in its group's common window added (`packing`)."""
    peaks = device_peaks(trials)
    rows, alone = [], [{} for _ in peaks]
    for k in sorted({t["k"] for t in trials}):
        mine = [t for t in trials if t["k"] == k]
        groups = [[t for t in mine if t["group"] == g] for g in sorted({t["group"] for t in mine})]
        for m, peak in enumerate(peaks):
            stats = [group_rates(group, m) for group in groups]
            for group, s in zip(groups, stats):
                for trial, rate in zip(group, s["tokens_per_s"]):
                    trial.setdefault("packing", []).append(
                        {"mode": trial["records"][m]["mode"], "tokens_per_s_in_overlap": rate,
                         "overlap_unix": [s["start"], s["end"]]})
                    if k == 1 and rate is not None:
                        alone[m][json.dumps(trial["shape"])] = rate
            rows.append(packing_row(k, m, groups, stats, alone[m], peak))
    first = trials[0]
    return {**meta, "device": first["device"], "torch": first["torch"], "date": first["date"],
            "load_avg_1m": [first["load_avg_1m"][0], trials[-1]["load_avg_1m"][1]],
            "memory": first["memory"], "peak_flops": peaks, "rows": rows, "trials": trials}


def _memory(n_bytes: int) -> str:
    return f"{n_bytes / 2**30:.2f} GiB" if n_bytes >= 2**30 else f"{n_bytes / 2**20:.0f} MiB"


def _number(value: Optional[float], fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _row(row: dict[str, Any]) -> list[str]:
    low, high = min(row["threads_per_trial"]), max(row["threads_per_trial"])
    threads = str(low) if low == high else f"{low}-{high}"
    return [str(row["k"]), row["mode"], _number(row["tokens_per_s"], ",.0f"),
            _number(row["tokens_per_s_per_trial"], ",.0f"),
            "-" if row["speedup"] is None else f"{row['speedup']:.2f}x",
            "-" if row["mfu"] is None else f"{100 * row['mfu']:.1f}%",
            _memory(row["peak_mem_bytes_per_trial"]), f"{row['overlap_s']:.2f}", threads]


def _trial_rows(trials: Sequence[dict[str, Any]]) -> list[list[str]]:
    cells = []
    for t in trials:
        group = [o for o in trials if o["k"] == t["k"] and o["group"] == t["group"]]
        zero = min(w["start_unix"] for o in group for w in o["timed_windows"])
        for record, window, packed in zip(t["records"], t["timed_windows"], t["packing"]):
            cells.append([str(t["k"]), str(t["index"] if t["k"] > 1 else t["group"]),
                          " ".join(t["shape"]) or "-", record["mode"], f"{record['tokens_per_s']:,.0f}",
                          _number(packed["tokens_per_s_in_overlap"], ",.0f"), f"{record['step_ms']:,.1f}",
                          _memory(record["peak_mem_bytes"]), str(t["threads"]),
                          f"{window['start_unix'] - zero:.2f}", f"{window['end_unix'] - zero:.2f}"])
    return cells


def format_report(result: dict[str, Any]) -> str:
    """Markdown: where and what, one row per packing and mode, the notes, every trial."""
    first = result["trials"][0]
    shapes = ", ".join(" ".join(shape) for shape in result["shapes"] if shape)
    header = (f"{result['device'].split(' (')[0]} ({result['cpus']} CPUs) | torch {result['torch']} | "
              f"{result['date']} | load {result['load_avg_1m'][0]:.1f} -> {result['load_avg_1m'][1]:.1f}\n"
              f"{' '.join(result['command'])}\n"
              f"{first['model']['name']} ({first['model']['n_layer']} x {first['model']['n_embd']}, "
              f"{si(first['model']['params'])} params), {first['batch']['tokens_per_step']:,} tokens/step"
              + (f", trials cycling through {shapes}" if shapes else "")
              + f" | {first['steps']} timed steps after {first['warmup_steps']} warm-up, per trial")
    table = markdown_table(COLUMNS, [_row(r) for r in result["rows"]], [True, False] + [True] * 7)
    apart = [r for r in result["rows"] if not r["together"]]
    notes = ("tokens/s: all the trials of a packing together, over the seconds where all were timing "
             "(overlap s); speed-up: the sum over the trials of their tokens/s over the same shape's "
             "alone (k=1); MFU: their FLOP/s together over the device's peak "
             f"({', '.join(_number(p, '.3g') for p in result['peak_flops'])} FLOP/s: the k=1 bench's peak, "
             f"with the whole device); peak mem: the largest trial's, {result['memory']}"
             + ("; on CUDA each trial is capped at 1/k of the GPU's memory" if "CUDA" in result["memory"] else ""))
    if apart:
        notes += ("\nnot timed together (a trial missed the barrier or the windows did not overlap): k="
                  + ", ".join(str(r["k"]) for r in apart))
    trial_table = markdown_table(TRIAL_COLUMNS, _trial_rows(result["trials"]), [True, True, False, False] + [True] * 7)
    return (f"{header}\n\n{table}\n{notes}\n\nEvery trial (tokens/s and step ms over its own timed steps; "
            f"from/to: seconds since its packing's first timed step):\n\n{trial_table}")


def write_results(result: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "packing.json", out_dir / "packing.md"
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    md_path.write_text(format_report(result))
    return json_path, md_path
