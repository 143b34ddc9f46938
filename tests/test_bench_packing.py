"""`python -m llm_sweep.bench.packing`: k bench processes at once on one device, their timed
steps started together by a barrier, and the packing's throughput over their common window.
The command runs for real on the CPU at tiny shapes; nothing asserts a speed."""
from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import torch

from conftest import run_app
from llm_sweep.bench.packing import expand_grid, plan_groups
from llm_sweep.bench.packing_barrier import StartBarrier, cpu_count, threads_per_trial
from llm_sweep.bench.packing_report import tokens_in_window
from llm_sweep.core.errors import ConfigError
from llm_sweep.hardware import share_gpu_memory

SMALL = ["model.n_layer=1", "model.n_embd=64", "model.head_dim=64", "batch.micro_batch_size=4",
         "batch.seq_len=32", "data.tokenizer=bytes", "compile=false", "device=cpu",
         "bench.modes=[eager-fp32]", "bench.warmup_steps=1", "bench.steps=3", "peak_flops=1e11"]


# --- the parts -----------------------------------------------------------------------------


def test_each_trial_gets_an_equal_share_of_the_cpus_and_at_least_one_thread():
    assert [threads_per_trial(k, cpus=16) for k in (1, 2, 4, 8, 32)] == [16, 8, 4, 2, 1]
    assert [threads_per_trial(k, cpus=2) for k in (1, 2, 3)] == [2, 1, 1]


def test_a_steps_tokens_count_in_proportion_to_its_time_inside_the_window():
    window = {"start_unix": 10.0, "step_ends_unix": [11.0, 13.0, 14.0], "end_unix": 14.0}
    assert tokens_in_window(window, 100, 10.0, 14.0) == pytest.approx(300)  # the whole window
    # half of step 0 (10-11), all of step 1 (11-13), none of step 2 (13-14)
    assert tokens_in_window(window, 100, 10.5, 13.0) == pytest.approx(150)
    assert tokens_in_window(window, 100, 12.0, 13.5) == pytest.approx(100)  # half of 1, half of 2
    assert tokens_in_window(window, 100, 20.0, 30.0) == 0


def test_the_barrier_releases_when_all_have_arrived_and_gives_up_after_its_timeout(tmp_path):
    barrier = StartBarrier(tmp_path, count=3, timeout_s=60)
    arrived = []
    threads = [threading.Thread(target=lambda: arrived.append(barrier.wait("0-eager-fp32/start")))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(0.2)
    assert all(thread.is_alive() for thread in threads) and arrived == []  # 2 of 3: waiting
    (tmp_path / "0-eager-fp32" / "start" / "third").touch()  # the third process arrives
    for thread in threads:
        thread.join(30)
    assert arrived == [3, 3]
    alone = StartBarrier(tmp_path / "other", count=2, timeout_s=0.05)
    assert alone.wait("gate") == 1  # nobody came: bounded, it goes on


def test_the_barrier_comes_from_the_environment():
    assert StartBarrier.from_env({}) is None
    barrier = StartBarrier.from_env({"LLM_SWEEP_BENCH_BARRIER": "4:/tmp/a:b",
                                     "LLM_SWEEP_BENCH_BARRIER_TIMEOUT_S": "30"})
    assert barrier == StartBarrier(Path("/tmp/a:b"), 4, 30.0)
    for bad in ("0:/tmp/a", "x:/tmp/a", "4:"):
        with pytest.raises(ConfigError, match="LLM_SWEEP_BENCH_BARRIER"):
            StartBarrier.from_env({"LLM_SWEEP_BENCH_BARRIER": bad})


def test_gpu_memory_is_shared_only_on_cuda_by_packed_trials(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction",
                        lambda fraction, device=None: calls.append((fraction, device)))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert share_gpu_memory(torch.device("cpu"), 4) is None
    assert share_gpu_memory(torch.device("cuda"), 1) is None
    assert calls == []
    assert share_gpu_memory(torch.device("cuda"), 4) == 0.25
    assert share_gpu_memory(torch.device("cuda", 1), 8) == 0.125
    assert calls == [(0.25, 0), (0.125, 1)]


def test_a_grid_in_the_overrides_is_cycled_through_by_the_trials(tmp_path):
    fixed, shapes = expand_grid(["model.n_embd=128,256", "model.n_layer=2", "bench.modes=[eager-fp32]"])
    assert fixed == ["model.n_layer=2", "bench.modes=[eager-fp32]"]
    assert shapes == [("model.n_embd=128",), ("model.n_embd=256",)]
    groups = plan_groups([1, 3], shapes, tmp_path)
    assert [[(t.k, t.index, t.shape) for t in group] for group in groups] == [
        [(1, 0, ("model.n_embd=128",))], [(1, 0, ("model.n_embd=256",))],  # k=1: each shape alone
        [(3, 0, ("model.n_embd=128",)), (3, 1, ("model.n_embd=256",)), (3, 2, ("model.n_embd=128",))]]
    assert expand_grid(["model=tiny"]) == (["model=tiny"], [()])


# --- the command ---------------------------------------------------------------------------


@pytest.mark.slow
def test_packing_one_and_two_trials_on_the_cpu(tmp_path):
    result = run_app(["--trials", "2", "--out", "out", "--", *SMALL], cwd=tmp_path,
                     module="llm_sweep.bench.packing")
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "out"
    assert f"wrote {out / 'packing.json'} and {out / 'packing.md'}" in result.stdout
    report = (out / "packing.md").read_text()
    assert report in result.stdout
    packing = json.loads((out / "packing.json").read_text())
    assert packing["packings"] == [1, 2]  # the baseline k=1 is always measured
    rows = packing["rows"]
    assert [(r["k"], r["mode"]) for r in rows] == [(1, "eager-fp32"), (2, "eager-fp32")]
    assert [t["k"] for t in packing["trials"]] == [1, 2, 2]
    cpus = cpu_count()
    for t in packing["trials"]:
        assert t["trials_per_gpu"] == t["k"] and t["gpu_memory_fraction"] is None  # no GPU here
        assert t["threads"] == max(1, cpus // t["k"])
        assert (out / f"k{t['k']}" / f"trial{t['index']}" / "bench.json").exists()

    alone, pair = packing["trials"][0], packing["trials"][1:]
    windows = [t["timed_windows"][0] for t in pair]
    assert all(w["barrier"] == {"count": 2, "arrived_at_start": 2, "arrived_at_end": 2} for w in windows)
    assert max(w["warmup_end_unix"] for w in windows) <= min(w["start_unix"] for w in windows)
    start, end = max(w["start_unix"] for w in windows), min(w["end_unix"] for w in windows)
    assert start < end  # the timed windows overlap
    assert all(len(w["step_ends_unix"]) == 3 for w in windows)

    # The row is the arithmetic of the trials' records over their common window.
    rates = [tokens_in_window(w, 128, start, end) / (end - start) for w in windows]
    single = alone["timed_windows"][0]
    rate_alone = tokens_in_window(single, 128, single["start_unix"], single["end_unix"]) / (
        single["end_unix"] - single["start_unix"])
    one, two = rows
    assert one["tokens_per_s"] == pytest.approx(rate_alone) and one["speedup"] == pytest.approx(1.0)
    assert one["tokens_per_s"] == pytest.approx(alone["records"][0]["tokens_per_s"], rel=0.05)
    assert two["tokens_per_s"] == pytest.approx(sum(rates))
    assert two["speedup"] == pytest.approx(sum(rates) / rate_alone)
    flops_per_token = alone["records"][0]["flops_per_token"]
    assert packing["peak_flops"] == [1e11]
    assert two["mfu"] == pytest.approx(sum(rates) * flops_per_token / 1e11)
    assert two["peak_mem_bytes_per_trial"] == max(t["records"][0]["peak_mem_bytes"] for t in pair)
    assert two["overlap_s"] == pytest.approx(end - start) and two["together"]
    assert two["threads_per_trial"] == [max(1, cpus // 2)]

    lines = [line for line in report.splitlines() if line.startswith("| 2 | eager-fp32 |")]
    assert lines == [f"| 2 | eager-fp32 | {two['tokens_per_s']:,.0f} | {two['tokens_per_s'] / 2:,.0f} | "
                     f"{two['speedup']:.2f}x | {100 * two['mfu']:.1f}% | "
                     f"{lines[0].split(' | ')[6]} | {two['overlap_s']:.2f} | {max(1, cpus // 2)} |"]


@pytest.mark.parametrize("args, named", [
    (["--trials", "0,2"], "--trials: '0,2': give integers >= 1"),
    (["--trials", "2", "--trails", "4"], "unrecognized arguments: --trails 4"),
    (["--trials", "2", "--", "distributed.trials_per_gpu=2"], "distributed.trials_per_gpu is set by the command"),
])
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, args, named):
    result = run_app(["--out", "out", *args], cwd=tmp_path, module="llm_sweep.bench.packing", timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0], result.stderr
    assert not (tmp_path / "out").exists()
