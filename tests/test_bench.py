"""`python -m llm_sweep.bench`: its arithmetic, its files, its errors, and the fused
training loss whose speed it measures."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import run_app
from llm_sweep.bench.metrics import BenchRecord, PhaseTimes, compile_overhead_s
from llm_sweep.bench.modes import MODES, BenchMode, parse_modes
from llm_sweep.bench.results import read_bench
from llm_sweep.core.model_config import ModelConfig
from llm_sweep.hardware import peak_memory_bytes, reset_peak_memory
from llm_sweep.models import layers
from llm_sweep.models.build import build_model
from llm_sweep.models.layers import linear_cross_entropy, loss_chunk_rows
from llm_sweep.training.metrics import mfu, tokens_per_s

RECORD_KEYS = {"mode", "tokens_per_s", "step_ms", "mfu", "peak_mem_bytes", "compile_s", "warmup_s",
               "fwd_bwd_ms", "optim_ms", "data_ms", "flops_per_token", "peak_flops"}

# --- arithmetic -------------------------------------------------------------------------


def test_tokens_per_s_and_mfu_from_a_known_step_time():
    assert tokens_per_s(10 * 2048, 20.0) == 1024.0
    # tiny at seq_len 128: 42,176,256 FLOPs per token; 1,024 tokens/s on a 100 GFLOP/s peak
    assert mfu(1024.0, 42_176_256, 100e9) == pytest.approx(0.43188486)
    with pytest.raises(ValueError, match="positive"):
        tokens_per_s(2048, 0.0)


def test_a_record_from_the_phase_times_of_four_steps():
    timed = PhaseTimes(data_s=0.01, fwd_bwd_s=1.5, optim_s=0.49)  # 2.0 s for 4 steps
    record = BenchRecord.from_times("eager-fp32", timed, steps=4, tokens_per_step=2048,
                                    warmup_s=3.0, warmup_steps=3, flops_per_token=1_000_000,
                                    peak_flops=8.192e9, peak_mem_bytes=123)
    assert record.tokens_per_s == 4096.0
    assert record.step_ms == 500.0
    assert (record.fwd_bwd_ms, record.optim_ms, record.data_ms) == pytest.approx((375.0, 122.5, 2.5))
    assert record.mfu == pytest.approx(0.5)  # 4,096 tokens/s x 1 MFLOP = 4.096 of 8.192 GFLOP/s
    assert record.compile_s == pytest.approx(1.5)  # 3 s of warm-up for 3 steps of 0.5 s
    assert record.peak_mem_bytes == 123


def test_phase_times_add_up_and_compile_overhead_is_never_negative():
    total = PhaseTimes(1.0, 2.0, 3.0) + PhaseTimes(0.5, 0.5, 0.5)
    assert (total.data_s, total.fwd_bwd_s, total.optim_s, total.step_s) == (1.5, 2.5, 3.5, 7.5)
    assert compile_overhead_s(warmup_s=0.9, warmup_steps=3, step_s=0.5) == 0.0
    assert compile_overhead_s(warmup_s=40.0, warmup_steps=3, step_s=2.0) == 34.0


def test_modes_parse_in_order():
    modes = parse_modes(["compile-bf16", "eager-fp32"])
    assert modes == [BenchMode(compile=True, dtype="bf16"), BenchMode(compile=False, dtype="fp32")]
    assert [mode.name for mode in parse_modes(list(MODES))] == list(MODES)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="Linux peak-RSS reset")
def test_peak_rss_is_reset_between_modes():
    buffer = np.ones(400 * 2**20 // 8)  # 400 MiB, touched
    peak_with_buffer = peak_memory_bytes(torch.device("cpu"))
    del buffer
    reset_peak_memory(torch.device("cpu"))
    assert peak_memory_bytes(torch.device("cpu")) < peak_with_buffer - 300 * 2**20


# --- the command ------------------------------------------------------------------------

SMALL = ["model.n_layer=1", "model.n_embd=64", "model.head_dim=64", "batch.micro_batch_size=2",
         "batch.seq_len=32", "device=cpu", "tracking=none"]


@pytest.mark.slow
def test_bench_writes_one_record_per_mode(tmp_path):
    result = run_app([*SMALL, "bench.modes=[eager-fp32,eager-bf16]", "bench.warmup_steps=1",
                      "bench.steps=2", "optim=sophiag", "optim.hessian_interval=2",
                      "peak_flops=1e11", "hydra.run.dir=out"], cwd=tmp_path, module="llm_sweep.bench")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    assert f"wrote {out / 'bench.json'} and {out / 'bench.md'}" in result.stdout
    bench = json.loads((out / "bench.json").read_text())
    assert bench["torch"] == torch.__version__ and bench["device"].startswith("cpu")
    assert bench["batch"]["tokens_per_step"] == 64 and bench["optim"]["name"] == "sophiag"
    assert (bench["warmup_steps"], bench["steps"]) == (1, 2)
    model = build_model(ModelConfig(**{k: v for k, v in bench["model"].items()
                                       if k not in ("params", "non_embedding_params")}))
    assert bench["model"]["params"] == model.num_params()
    assert bench["flops_per_token"] == model.flops_per_token(32)
    assert math.isfinite(bench["data_tokens_per_s"]) and bench["data_tokens_per_s"] > 0

    records = bench["records"]
    assert [r["mode"] for r in records] == ["eager-fp32", "eager-bf16"]
    for r in records:
        assert set(r) == RECORD_KEYS
        assert r["flops_per_token"] == bench["flops_per_token"]
        assert r["tokens_per_s"] * r["step_ms"] / 1000 == pytest.approx(64)
        assert r["fwd_bwd_ms"] + r["optim_ms"] + r["data_ms"] == pytest.approx(r["step_ms"])
        assert r["peak_flops"] == 1e11
        assert r["mfu"] == pytest.approx(r["tokens_per_s"] * r["flops_per_token"] / 1e11)
        assert r["peak_mem_bytes"] > 50 * 2**20  # the process with torch loaded

    best = max(records, key=lambda r: r["tokens_per_s"])
    planned = read_bench(out / "bench.json")  # what `python -m llm_sweep.plan --bench` uses
    assert (planned.mode, planned.mfu) == (best["mode"], best["mfu"])
    assert planned.peak_flops == pytest.approx(best["peak_flops"])

    table = (out / "bench.md").read_text()
    assert table in result.stdout
    assert "| mode | tokens/s | step ms | fwd+bwd ms | optim ms | data ms | MFU | peak mem | compile s |" in table
    assert f"| eager-bf16 | {records[1]['tokens_per_s']:,.0f} |" in table
    assert "sampling: BatchSampler.get gives" in table


@pytest.mark.slow
def test_an_unknown_mode_is_one_line_and_exit_code_2(tmp_path):
    result = run_app([*SMALL, "bench.modes=[eager-fp32,eager-fp16]", "hydra.run.dir=out"],
                     cwd=tmp_path, module="llm_sweep.bench")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: bench.modes[1]='eager-fp16' is not one of eager-fp32, eager-bf16, "
        "compile-fp32, compile-bf16"]
    assert not (tmp_path / "out" / "bench.json").exists()


# --- the fused head and loss of the training step ---------------------------------------

def test_loss_chunks_cover_the_rows_in_few_large_pieces():
    assert loss_chunk_rows(2048, 50304) == 1024  # tiny's batch=cpu: 2 chunks of 206 MB in fp32
    assert loss_chunk_rows(32768, 50304) == 1344  # batch=a100 micro-batches: 25 chunks
    assert loss_chunk_rows(10, 512) == 10


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(layers, "LOSS_CHUNK_LOGITS", 64 * 512)  # 64-row chunks of a 512 vocab


@pytest.mark.parametrize("rows", [200, 64])  # 4 chunks, the last partial; exactly one chunk
def test_linear_cross_entropy_matches_the_logits_path(small_chunks, rows):
    torch.manual_seed(0)
    hidden = torch.randn(rows, 32, requires_grad=True)
    weight = (0.3 * torch.randn(512, 32)).requires_grad_()
    targets = torch.randint(0, 512, (rows,))
    expected = F.cross_entropy(hidden @ weight.t(), targets)
    expected_grads = torch.autograd.grad(3 * expected, (hidden, weight))
    loss = linear_cross_entropy(hidden, weight, targets)
    grads = torch.autograd.grad(3 * loss, (hidden, weight))  # a scale reaches the stored gradients
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    for grad, reference in zip(grads, expected_grads):
        torch.testing.assert_close(grad, reference, rtol=1e-5, atol=1e-7)
    with torch.no_grad():
        assert linear_cross_entropy(hidden, weight, targets).item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_training_path_gives_the_logits_path_loss_and_gradients(small_chunks, arch):
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch=arch, n_layer=1, n_embd=64, head_dim=16, vocab_size=512,
                                    max_seq_len=64))
    idx, targets = torch.randint(0, 512, (2, 4, 50)).unbind(0)  # 200 tokens: 4 chunks
    logits, expected = model(idx, targets)
    expected.backward()
    expected_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    no_logits, loss = model(idx, targets, return_logits=False)
    loss.backward()
    assert no_logits is None and logits.shape == (4, 50, 512)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    for param, reference in zip(model.parameters(), expected_grads):
        torch.testing.assert_close(param.grad, reference, rtol=1e-4, atol=1e-6)


def test_training_path_under_bf16_autocast_rounds_like_the_logits_path(small_chunks):
    torch.manual_seed(0)
    model = build_model(ModelConfig(n_layer=1, n_embd=64, head_dim=16, vocab_size=512, max_seq_len=64))
    idx, targets = torch.randint(0, 512, (2, 4, 50)).unbind(0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, expected = model(idx, targets)
        _, loss = model(idx, targets, return_logits=False)
    assert loss.dtype == torch.float32
    # The same bf16 logits, then fp32 softmax: equal up to fp32 summation order.
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.slow
def test_training_path_traces_as_one_graph_forward_and_backward():
    torch.manual_seed(0)
    model = build_model(ModelConfig(n_layer=1, n_embd=64, head_dim=16, vocab_size=512, max_seq_len=64))
    idx, targets = torch.randint(0, 512, (2, 2, 32)).unbind(0)
    _, expected = model(idx, targets)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)  # a graph break raises
    _, loss = compiled(idx, targets, return_logits=False)
    loss.backward()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert model.tok_emb.weight.grad is not None


# --- CUDA (run by benchmarks/gpu_check.sh on a GPU machine) -----------------------------

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
def test_fused_loss_on_cuda_in_bf16_matches_the_logits_path(small_chunks):
    torch.manual_seed(0)
    model = build_model(ModelConfig(n_layer=1, n_embd=128, vocab_size=512, max_seq_len=64)).cuda()
    idx, targets = torch.randint(0, 512, (2, 4, 50), device="cuda").unbind(0)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        _, expected = model(idx, targets)
    expected.backward()
    expected_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        _, loss = model(idx, targets, return_logits=False)
    loss.backward()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    for param, reference in zip(model.parameters(), expected_grads):
        # bf16 matmuls: the head's weight gradient sums bf16 chunk products in fp32
        torch.testing.assert_close(param.grad, reference, rtol=0.02, atol=0.01 * reference.abs().max().item())


@cuda
def test_compiled_bf16_step_on_cuda_matches_eager():
    torch.manual_seed(0)
    model = build_model(ModelConfig(n_layer=2, n_embd=128, max_seq_len=128)).cuda()
    idx, targets = torch.randint(0, 50304, (2, 8, 128), device="cuda").unbind(0)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        _, expected = model(idx, targets, return_logits=False)
        _, loss = torch.compile(model)(idx, targets, return_logits=False)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-2)


@cuda
def test_bench_on_cuda_reports_allocated_memory_and_the_gpu_peak():
    from hydra import compose, initialize_config_dir

    from llm_sweep.bench.runner import run_bench
    from llm_sweep.core.config import CONF_DIR, load_config, register_configs
    from llm_sweep.hardware import gpu_peak_flops

    register_configs()
    on_cpu = [o for o in SMALL if not o.startswith("device=")]
    overrides = [*on_cpu, "device=cuda", "bench.modes=[eager-bf16,eager-fp32]", "bench.warmup_steps=1",
                 "bench.steps=2", "batch.micro_batch_size=8", "batch.seq_len=128"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        run = load_config(compose(config_name="config", overrides=overrides))
    result = run_bench(run)
    name = torch.cuda.get_device_name()
    table_peak = gpu_peak_flops(name)
    bf16, fp32 = result.records
    for record in result.records:  # at least fp32 weights, gradients and two AdamW moments
        assert 16 * result.summary["model"]["params"] < record.peak_mem_bytes
        assert record.peak_mem_bytes < torch.cuda.get_device_properties(0).total_memory
    if table_peak is not None:
        assert (bf16.peak_flops, fp32.peak_flops) == (table_peak, table_peak / 2)
    assert result.summary["device"] == name


def test_the_bench_leaves_its_process_group(one_rank_env, tmp_path, monkeypatch):
    """Started as a process of a group (torchrun), the bench command joins it and leaves it
    when done (NCCL may hang at exit otherwise): the command itself, in this process."""
    import torch.distributed as dist

    from llm_sweep.bench.cli import main

    args = [*SMALL, "bench.modes=[eager-fp32]", "bench.warmup_steps=1", "bench.steps=1", "peak_flops=1e11",
            "optim=sophiag", "optim.hessian_interval=1", f"hydra.run.dir={tmp_path}/out"]
    monkeypatch.setattr(sys, "argv", ["bench", *args])
    main()
    bench = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert bench["ddp"] and bench["world_size"] == 1  # it trained in the group
    assert not dist.is_initialized()
