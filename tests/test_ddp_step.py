"""How the training step is built for DDP, in a process group of one on Gloo (in this
process): compiled over DDP, so the all-reduce of each gradient bucket can overlap the
backward, SophiaG's Hessian refresh going through the same wrappers, and the processes'
agreement on when to stop."""
from __future__ import annotations

import contextlib
import functools
import logging

import pytest
import torch
from torch.nn.parallel import DistributedDataParallel

from llm_sweep.core.model_config import ModelConfig
from llm_sweep.core.optim_config import OptimConfig
from llm_sweep.models.build import build_model, unwrap
from llm_sweep.optim.build import build_optimizer
from llm_sweep.training.distributed import wrap_for_ddp
from llm_sweep.training.steps import forward_backward
from llm_sweep.training.stop import BUDGET, PREEMPTED, PRUNED, StopRequest


def small_model() -> torch.nn.Module:
    torch.manual_seed(0)
    # About 1.7M parameters (6.6 MB of fp32 gradients): several 1 MB buckets.
    return build_model(ModelConfig(n_layer=2, n_embd=256, head_dim=64, vocab_size=320, max_seq_len=32))


def test_the_compiled_step_is_ddp_inside_so_its_graph_splits_at_bucket_boundaries(world_of_one, caplog):
    model = small_model()
    reference = small_model()
    compile_fn = functools.partial(torch.compile, backend="eager")  # dynamo's DDP handling, no codegen
    step_model = wrap_for_ddp(model, torch.device("cpu"), bucket_cap_mb=1, compile=compile_fn)
    assert isinstance(step_model._orig_mod, DistributedDataParallel)  # DDP under the compiler
    assert unwrap(step_model) is model
    x = torch.randint(0, 320, (2, 2, 32), generator=torch.Generator().manual_seed(1))
    batches = [(x[0], x[0].roll(-1, 1)), (x[1], x[1].roll(-1, 1))]
    torch._dynamo.reset()
    with caplog.at_level(logging.INFO, logger="torch._dynamo.backends.distributed"):
        loss = forward_backward(step_model, batches, contextlib.nullcontext)
    buckets = [r.getMessage() for r in caplog.records if "DDPOptimizer used bucket cap" in r.getMessage()]
    assert buckets and int(buckets[0].split("created ")[1].split(" buckets")[0]) >= 3
    expected = forward_backward(reference, batches, contextlib.nullcontext)
    assert loss.item() == pytest.approx(expected.item(), abs=1e-5)
    for p, q in zip(model.parameters(), reference.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-6)


def test_the_hessian_refresh_goes_through_ddp_and_a_zero_weight_adds_nothing(world_of_one):
    model = small_model()
    step_model = wrap_for_ddp(model, torch.device("cpu"))
    optimizer, hook = build_optimizer(model, OptimConfig(name="sophiag", hessian_interval=1), 64, "cpu", seed=3)
    inputs = torch.randint(0, 320, (2, 32), generator=torch.Generator().manual_seed(2))
    hook.after_step(0, step_model, inputs, contextlib.nullcontext, first_row=0, weight=0.0)
    assert all(optimizer.state[p]["hessian"].abs().sum() == 0 for p in model.parameters())
    hook.after_step(0, step_model, inputs, contextlib.nullcontext, first_row=0, weight=1.0)
    estimate = [optimizer.state[p]["hessian"].clone() for p in model.parameters()]
    assert sum(h.sum() for h in estimate) > 0 and all(p.grad is None for p in model.parameters())
    # Seeded per sequence: the same rows and step give the same labels, hence the same estimate.
    again, hook2 = build_optimizer(model, OptimConfig(name="sophiag", hessian_interval=1), 64, "cpu", seed=3)
    hook2.after_step(0, step_model, inputs, contextlib.nullcontext, first_row=0, weight=1.0)
    assert all(torch.equal(again.state[p]["hessian"], h) for p, h in zip(model.parameters(), estimate))


def agree(stops: list[StopRequest], during: dict[int, str] | None = None) -> list[str | None]:
    """One agreement, as training.loop.settle makes it: each process sends its code, a
    request may reach a process while the all-reduce runs (`during`), all adopt the max."""
    sent = [stop.code for stop in stops]
    for rank, reason in (during or {}).items():
        stops[rank].request(reason, "signal")
    agreed = max(sent)
    for stop, code in zip(stops, sent):
        stop.adopt(agreed, code)
    return [stop.reason for stop in stops]


def test_a_stop_that_arrives_during_an_agreement_stops_every_process_at_the_next_one():
    """A preemption signal reaching rank 1 while the processes agree must not make rank 1
    stop alone (rank 0 would wait in a collective rank 1 never enters)."""
    stops = [StopRequest(), StopRequest()]
    assert agree(stops, during={1: PREEMPTED}) == [None, None]  # nobody stops yet, alike
    assert agree(stops) == [PREEMPTED, PREEMPTED]  # sent, agreed, taken by both
    assert stops[1].detail == "signal" and stops[0].detail == "on another process"


def test_a_held_back_stop_yields_to_the_budget_agreed_at_the_same_step():
    stops = [StopRequest(), StopRequest()]
    stops[0].request(BUDGET)
    assert agree(stops, during={1: PREEMPTED}) == [BUDGET, BUDGET]  # both finish normally
    stops = [StopRequest(), StopRequest()]
    stops[0].request(PRUNED)
    assert agree(stops) == [PRUNED, PRUNED]
