"""The parametrizations (models/parametrization.py): sp exactly as before, mup and completep
by their papers' rules, and both equal to sp at the base shape."""
from __future__ import annotations

import contextlib
import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir

from conftest import TINY, StopAt
from llm_sweep.core.config import CONF_DIR, load_config, register_configs
from llm_sweep.core.errors import ConfigError
from llm_sweep.core.model_config import ModelConfig
from llm_sweep.core.optim_config import OptimConfig
from llm_sweep.models.build import build_model
from llm_sweep.models.layers import linear_cross_entropy
from llm_sweep.models.parametrization import attention_scale
from llm_sweep.optim.adamw import build_adamw
from llm_sweep.optim.build import build_optimizer
from llm_sweep.optim.schedules import set_lr
from llm_sweep.optim.sophia import sample_next_tokens
from llm_sweep.training.loop import train
from llm_sweep.training.steps import forward_backward, optimizer_step

register_configs()
LR = 3e-3


def small(arch: str = "llama", weight_tying: bool = True, **fields) -> ModelConfig:
    return ModelConfig(**{**dict(arch=arch, n_layer=2, n_embd=64, head_dim=32, vocab_size=320, max_seq_len=32,
                                 weight_tying=weight_tying), **fields})


def first_losses(config: ModelConfig, chunks: int, optim: str, steps: int = 2) -> list[float]:
    """The losses of `steps` training steps from seed 0 on one fixed batch, then the loss after them."""
    torch.manual_seed(0)
    model = build_model(config)
    model.loss_chunks = chunks
    optimizer, hook = build_optimizer(model, OptimConfig(name=optim, lr=LR), 4 * 32, "cpu", seed=0)
    tokens = torch.randint(0, 256, (4, 33), generator=torch.Generator().manual_seed(1))
    batch = [(tokens[:, :-1], tokens[:, 1:])]
    losses = []
    for step in range(steps):
        set_lr(optimizer, LR)
        losses.append(forward_backward(model, batch, contextlib.nullcontext).item())
        optimizer_step(model, optimizer, hook, 1.0)
        hook.after_step(step, model, batch[0][0], contextlib.nullcontext)
    with torch.no_grad():
        losses.append(model(*batch[0])[1].item())
    return losses


# Computed by the code before parametrizations existed (CPU, fp32): two steps from seed 0,
# then the loss after them. Bit-identical on the machine that computed them; the tolerance
# leaves room for another CPU's summation order only.
SP_BEFORE = {
    ("llama", True, 0, "adamw"): [5.785468578338623, 5.3870134353637695, 5.107614040374756],
    ("llama", True, 1, "sophiag"): [5.785469055175781, 5.387008190155029, 5.106021881103516],
    ("llama", False, 1, "adamw"): [5.794419288635254, 5.346794605255127, 4.991629600524902],
    ("llama", False, 0, "sophiag"): [5.794418811798096, 5.3467888832092285, 4.990103244781494],
    ("gpt2", True, 1, "adamw"): [5.790915489196777, 5.286499977111816, 5.048375606536865],
    ("gpt2", True, 0, "sophiag"): [5.790915012359619, 5.286502361297607, 5.047623157501221],
    ("gpt2", False, 0, "adamw"): [5.788609981536865, 5.242390155792236, 4.983749866485596],
    ("gpt2", False, 1, "sophiag"): [5.788609504699707, 5.24238920211792, 4.985905170440674],
}


@pytest.mark.parametrize("arch, tying, chunks, optim", sorted(SP_BEFORE), ids=str)
def test_sp_trains_as_before_parametrizations_existed(arch, tying, chunks, optim):
    expected = SP_BEFORE[arch, tying, chunks, optim]
    assert first_losses(small(arch, tying), chunks, optim) == pytest.approx(expected, rel=1e-6, abs=0)


@pytest.mark.parametrize("optim", ["adamw", "sophiag"])
@pytest.mark.parametrize("arch, tying, chunks", [("llama", True, 1), ("llama", False, 0), ("gpt2", False, 1),
                                                 ("gpt2", True, 0)])
def test_at_the_base_shape_mup_and_completep_are_sp_bit_for_bit(arch, tying, chunks, optim):
    sp = small(arch, tying, n_head=2)  # a fixed head count: the attention scale is anchored too
    mup = small(arch, tying, n_head=2, parametrization="mup", base_width=64)
    completep = small(arch, tying, n_head=2, parametrization="completep", base_width=64, base_depth=2)
    torch.manual_seed(0)
    weights = build_model(sp).state_dict()
    for config in (mup, completep):
        torch.manual_seed(0)
        assert all(torch.equal(weights[k], v) for k, v in build_model(config).state_dict().items())
    expected = first_losses(sp, chunks, optim, steps=3)
    assert first_losses(mup, chunks, optim, steps=3) == expected
    assert first_losses(completep, chunks, optim, steps=3) == expected


def test_each_base_constant_does_what_its_key_says():
    """model.output_mult, model.attn_mult, model.init_std and optim.embed_lr_mult, on a
    standard model: logits times output_mult, the attention scale times attn_mult, every
    weight drawn at init_std, the embeddings' lr times embed_lr_mult."""
    base = small("llama", True, n_head=2)
    torch.manual_seed(0)
    plain = build_model(base)
    doubled = build_model(dataclasses.replace(base, output_mult=2.0))
    doubled.load_state_dict(plain.state_dict())
    idx = torch.randint(0, 256, (2, 16))
    with torch.no_grad():
        assert torch.equal(doubled(idx), 2.0 * plain(idx))
    assert attention_scale(base) is None
    assert attention_scale(dataclasses.replace(base, attn_mult=0.5)) == pytest.approx(0.5 / math.sqrt(32))
    torch.manual_seed(0)
    wider_init = build_model(dataclasses.replace(base, init_std=0.05))
    assert wider_init.blocks[0].attn.qkv.weight.std().item() == pytest.approx(0.05, rel=0.05)
    assert wider_init.tok_emb.weight.std().item() == pytest.approx(0.05, rel=0.05)
    optimizer = build_adamw(plain, OptimConfig(lr=1e-3, embed_lr_mult=4.0), "cpu")
    by_param = {id(p): group for group in optimizer.param_groups for p in group["params"]}
    assert by_param[id(plain.tok_emb.weight)]["lr"] == pytest.approx(4e-3)
    assert by_param[id(plain.blocks[0].attn.qkv.weight)]["lr"] == pytest.approx(1e-3)
    assert by_param[id(plain.norm.weight)]["lr"] == pytest.approx(1e-3)
    assert len(build_adamw(plain, OptimConfig(lr=1e-3), "cpu").param_groups) == 2  # sp's own two


def wide() -> ModelConfig:
    """4x the base width at a fixed head count (head size 64 against 16), 3x the base depth."""
    return small(n_layer=3, n_embd=256, n_head=4, weight_tying=False, parametrization="completep",
                 base_width=64, base_depth=1)


def test_the_multipliers_follow_width_and_depth():
    model = build_model(wide())
    assert model.logit_multiplier == 0.25  # base_width / n_embd
    assert all(block.residual == 1 / 3 for block in model.blocks)  # (base_depth / n_layer)^1
    assert model.blocks[0].attn.scale == math.sqrt(16) / 64  # sqrt(d_base) / d, not 1/sqrt(64)
    mup = build_model(small(n_embd=256, n_head=4, parametrization="mup", base_width=64, base_depth=1))
    assert all(block.residual == 1.0 for block in mup.blocks)  # mup leaves depth alone
    heads_at_head_dim = build_model(small(n_embd=256, parametrization="mup", base_width=64))
    assert heads_at_head_dim.blocks[0].attn.scale is None  # more heads, same head size: SDPA's 1/sqrt(d)


def test_the_init_scales_hidden_matrices_by_fan_in_and_keeps_embeddings_and_readout():
    torch.manual_seed(0)
    model, config = build_model(wide()), wide()
    std = {name: p.std().item() for name, p in model.named_parameters() if p.dim() == 2}
    assert config.mlp_hidden == 768  # the SwiGLU width at 256; 256 at the base width 64
    expected = {"tok_emb.weight": 0.02, "lm_head.weight": 0.02,
                "blocks.0.attn.qkv.weight": 0.02 / 2, "blocks.0.mlp.gate_up.weight": 0.02 / 2,
                # GPT-2's 1/sqrt(2 L) at the base depth, then by fan-in
                "blocks.0.attn.out_proj.weight": 0.02 / math.sqrt(2 * 1 * 4),
                "blocks.0.mlp.out_proj.weight": 0.02 / math.sqrt(2 * 1 * 768 / 256)}
    for name, value in expected.items():
        assert std[name] == pytest.approx(value, rel=0.03), name


def groups_by_param(optimizer: torch.optim.Optimizer, model: torch.nn.Module) -> dict[str, dict]:
    by_id = {id(p): group for group in optimizer.param_groups for p in group["params"]}
    return {name: by_id[id(p)] for name, p in model.named_parameters()}


def test_adamw_scales_lr_weight_decay_and_eps_per_layer_kind():
    model = build_model(wide())
    cfg = OptimConfig(lr=1e-2, weight_decay=0.1, eps=1e-8)
    optimizer, _ = build_optimizer(model, cfg, 128, "cpu")
    set_lr(optimizer, 1e-2)
    groups = groups_by_param(optimizer, model)
    m_n, m_l = 4, 3
    hidden = groups["blocks.1.attn.qkv.weight"]
    assert (hidden["lr"], hidden["weight_decay"], hidden["eps"]) == pytest.approx(
        (1e-2 / m_n, 0.1 * m_n, 1e-8 / (m_n * m_l)))
    norm = groups["blocks.1.attn_norm.weight"]
    assert (norm["lr"], norm["weight_decay"], norm["eps"]) == pytest.approx((1e-2, 0.0, 1e-8 / (m_n * m_l)))
    for name, decay in [("tok_emb.weight", 0.1), ("lm_head.weight", 0.1), ("norm.weight", 0.0)]:
        group = groups[name]
        assert (group["lr"], group["weight_decay"], group["eps"]) == (1e-2, decay, 1e-8), name
    # The SwiGLU down projection reads the MLP width, which multiple_of rounds: its own fan-in ratio.
    assert groups["blocks.0.mlp.out_proj.weight"]["lr"] == pytest.approx(1e-2 / (768 / 256))
    # The ratios survive a checkpoint, and set_lr applies them to the schedule's lr.
    fresh, _ = build_optimizer(build_model(wide()), cfg, 128, "cpu")
    fresh.load_state_dict(optimizer.state_dict())
    set_lr(fresh, 5e-3)
    expected = sorted(5e-3 * group["lr_scale"] for group in optimizer.param_groups)
    assert sorted(group["lr"] for group in fresh.param_groups) == pytest.approx(expected)


def test_sophia_takes_the_same_lr_and_weight_decay_factors_without_eps():
    model = build_model(wide())
    optimizer, _ = build_optimizer(model, OptimConfig(name="sophiag", lr=1e-2, weight_decay=0.2), 128, "cpu")
    groups = groups_by_param(optimizer, model)
    assert groups["blocks.0.mlp.gate_up.weight"]["lr"] == pytest.approx(1e-2 / 4)
    assert groups["blocks.0.mlp.gate_up.weight"]["weight_decay"] == pytest.approx(0.2 * 4)
    assert groups["tok_emb.weight"]["lr"] == 1e-2 and "eps" not in groups["tok_emb.weight"]


@pytest.mark.parametrize("chunks", [0, 1, 3])
def test_the_fused_head_applies_the_logit_multiplier_inside(chunks):
    torch.manual_seed(0)
    hidden = torch.randn(48, 16, requires_grad=True)
    weight = torch.randn(40, 16, requires_grad=True)
    targets = torch.randint(0, 40, (48,))
    F.cross_entropy(0.25 * hidden @ weight.t(), targets).backward()
    expected = [hidden.grad.clone(), weight.grad.clone()]
    hidden.grad = weight.grad = None
    loss = linear_cross_entropy(hidden, weight, targets, 0.25, chunks=chunks)
    loss.backward()
    torch.testing.assert_close(loss, F.cross_entropy(0.25 * hidden @ weight.t(), targets))
    torch.testing.assert_close([hidden.grad, weight.grad], expected)


@pytest.mark.parametrize("chunks", [0, 1])
@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_a_multiplied_model_compiles_as_one_graph_with_its_eager_loss_and_gradients(arch, chunks):
    torch.manual_seed(0)
    model = build_model(small(arch, n_head=4, parametrization="completep", base_width=32, base_depth=1))
    model.loss_chunks = chunks
    idx, targets = torch.randint(0, 320, (2, 2, 24)).unbind(0)
    _, eager = model(idx, targets, return_logits=False)
    eager.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)  # a graph break raises
    _, loss = compiled(idx, targets, return_logits=False)
    loss.backward()
    assert loss.item() == pytest.approx(eager.item(), rel=1e-6)
    for grad, p in zip(grads, model.parameters()):
        torch.testing.assert_close(p.grad, grad)
    _, plain = model(idx, targets)  # the logits path agrees with the fused training path
    assert plain.item() == pytest.approx(eager.item(), rel=1e-5)


def test_sophia_samples_its_labels_from_the_multiplied_logits():
    hidden, weight = torch.randn(64, 8), torch.randn(30, 8)
    seeds = list(range(64))
    multiplied = sample_next_tokens(hidden, weight, seeds, 0.25)
    assert torch.equal(multiplied, sample_next_tokens(0.25 * hidden, weight, seeds))
    assert not torch.equal(multiplied, sample_next_tokens(hidden, weight, seeds))


def test_a_parametrization_without_its_base_shape_is_refused():
    with pytest.raises(ConfigError, match=r"^model\.base_width is required with model\.parametrization=mup"):
        build_model(small(parametrization="mup"))
    needs_depth = r"^model\.base_depth is required with model\.parametrization=completep"
    with pytest.raises(ConfigError, match=needs_depth):
        build_model(small(parametrization="completep", base_width=32))
    build_model(small(base_width=32, base_depth=7))  # sp ignores a base shape


def tiny_run(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = compose(config_name="config", overrides=[*TINY, "tracking.log_interval=1", *overrides])
    return load_config(cfg)


COMPLETEP = ["model.parametrization=completep", "model.base_width=32", "model.base_depth=1", "model.n_layer=2",
             "model.n_head=1", "budget.steps=4", "checkpoint.interval=2"]


@pytest.mark.slow
def test_a_completep_run_resumes_bit_exact_and_trains_alike_under_ddp(tmp_path, world_of_one):
    run = tiny_run(*COMPLETEP, "optim=sophiag", "optim.hessian_interval=1")
    whole = train(run, tmp_path / "whole")
    with pytest.raises(KeyboardInterrupt):
        train(run, tmp_path / "split", sinks=[StopAt(3)])  # after the checkpoint of step 2
    resumed = train(run, tmp_path / "split")
    assert resumed["steps"] == 4 and resumed["val_loss"] == whole["val_loss"]
    ddp = train(run, tmp_path / "ddp", world=world_of_one)
    assert ddp["val_loss"] == pytest.approx(whole["val_loss"], rel=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_completep_compiles_with_inductor_in_bf16_as_one_graph():
    """The GPU path (inductor, bf16 autocast, flash attention, the fused head): a multiplied
    model compiles without a graph break and matches its eager loss."""
    torch.manual_seed(0)
    config = ModelConfig(n_layer=4, n_embd=256, head_dim=64, vocab_size=50304, max_seq_len=256,
                         parametrization="completep", base_width=128, base_depth=2)
    model = build_model(config).cuda()
    idx, targets = torch.randint(0, 50304, (2, 4, 256), device="cuda").unbind(0)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        _, eager = model(idx, targets, return_logits=False)
        compiled = torch.compile(model, fullgraph=True)  # a graph break raises
        _, loss = compiled(idx, targets, return_logits=False)
    loss.backward()
    assert loss.item() == pytest.approx(eager.item(), rel=2e-2)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
