import contextlib
import copy
import functools
import io

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from llm_sweep.core.errors import ConfigError
from llm_sweep.core.model_config import ModelConfig
from llm_sweep.core.optim_config import OptimConfig
from llm_sweep.models import layers
from llm_sweep.models.build import build_model
from llm_sweep.optim import sophia
from llm_sweep.optim.build import build_optimizer
from llm_sweep.optim.hooks import OptimizerHook
from llm_sweep.optim.sophia import SophiaG, sample_next_tokens

VOCAB, WIDTH = 11, 8


class TinyLM(nn.Module):
    """Embedding tied to the output head, one hidden layer and a norm, with CausalLM's
    interface: `features`, `lm_head`, and logits or (logits | None, loss) from forward."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, WIDTH)
        self.hidden = nn.Linear(WIDTH, WIDTH)
        self.norm = nn.LayerNorm(WIDTH)
        self.head = nn.Linear(WIDTH, VOCAB, bias=False)
        self.head.weight = self.embed.weight

    @property
    def lm_head(self):
        return self.head

    def features(self, idx):
        return self.norm(torch.relu(self.hidden(self.embed(idx))))

    def forward(self, idx, targets=None, return_logits=True):
        logits = self.head(self.features(idx))
        if targets is None:
            return logits
        loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
        return (logits if return_logits else None), loss


@pytest.fixture
def model():
    torch.manual_seed(0)
    return TinyLM()


def _ids(params):
    return {id(p) for p in params}


def test_adamw_decays_matrices_only_and_counts_tied_weights_once(model):
    cfg = OptimConfig(name="adamw", lr=3e-4, weight_decay=0.2, beta1=0.8, beta2=0.9, eps=1e-7)
    optimizer, hook = build_optimizer(model, cfg, tokens_per_step=64, device_type="cpu")
    decay, no_decay = optimizer.param_groups
    assert _ids(decay["params"]) == _ids([model.embed.weight, model.hidden.weight])
    assert _ids(no_decay["params"]) == _ids([model.hidden.bias, model.norm.weight, model.norm.bias])
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.2, 0.0)
    assert len(decay["params"]) == 2  # the tied embedding/head weight appears once
    for group in optimizer.param_groups:
        assert group["lr"] == 3e-4 and group["betas"] == (0.8, 0.9) and group["eps"] == 1e-7
    assert optimizer.defaults["fused"] is True  # the fused kernel on CPU too
    assert type(hook) is OptimizerHook
    assert hook.step_kwargs() == {}
    assert hook.after_step(0, model, torch.zeros(1, 4, dtype=torch.long), contextlib.nullcontext) == {}


def test_adamw_skips_frozen_parameters(model):
    model.norm.requires_grad_(False)
    optimizer, _ = build_optimizer(model, OptimConfig(name="adamw"), 64, "cpu")
    assert _ids(optimizer.param_groups[1]["params"]) == _ids([model.hidden.bias])


def test_adamw_on_cuda_uses_the_fused_kernel(model):
    # Fused AdamW also runs on CPU tensors, so the CUDA choice is exercised for real here.
    optimizer, _ = build_optimizer(model, OptimConfig(name="adamw"), 64, device_type="cuda")
    assert optimizer.defaults["fused"] is True
    before = model.hidden.weight.detach().clone()
    model(torch.tensor([[1, 2, 3]])).sum().backward()
    optimizer.step()
    assert not torch.equal(model.hidden.weight, before)


def test_unknown_optimizer_names_the_key_and_choices(model):
    with pytest.raises(ConfigError, match=r"optim\.name='lion'.*adamw, sophiag"):
        build_optimizer(model, OptimConfig(name="lion"), 64, "cpu")


def _sophia_example():
    """lr=0.1, wd=0.5, beta1=0.5, beta2=0.75, rho=0.5, bs=4, so rho*bs = 2."""
    p = torch.tensor([1.0, -2.0, 0.5, 3.0], requires_grad=True)
    optimizer = SophiaG([p], lr=0.1, betas=(0.5, 0.75), rho=0.5, weight_decay=0.5)
    p.grad = torch.tensor([2.0, 2.0, 0.0, 4.0])
    optimizer.update_hessian()  # h = 0.25 * g^2 = [1, 1, 0, 4]
    return p, optimizer


def test_update_hessian_is_an_ema_of_squared_gradients():
    p, optimizer = _sophia_example()
    frozen = torch.ones(2, requires_grad=True)  # no gradient: no state
    optimizer.add_param_group({"params": [frozen]})
    assert torch.equal(optimizer.state[p]["hessian"], torch.tensor([1.0, 1.0, 0.0, 4.0]))
    p.grad = torch.tensor([0.0, 2.0, 2.0, 2.0])
    optimizer.update_hessian()  # 0.75 * [1, 1, 0, 4] + 0.25 * [0, 4, 4, 4]
    assert torch.equal(optimizer.state[p]["hessian"], torch.tensor([0.75, 1.75, 1.0, 4.0]))
    assert frozen not in optimizer.state


def test_sophia_step_matches_hand_computed_update():
    p, optimizer = _sophia_example()
    assert optimizer.win_rate.isnan()
    p.grad = torch.tensor([6.0, -1.0, 0.2, -2.0])
    optimizer.step(bs=4)
    # m = 0.5 * g                   = [3, -0.5, 0.1, -1]
    # |m| / (2h + 1e-15)            = [1.5, 0.25, 1e14, 0.125] -> clipped at 1: [1, .25, 1, .125]
    # decay: p * (1 - 0.1 * 0.5)    = [0.95, -1.9, 0.475, 2.85]
    # minus 0.1 * sign(m) * ratio   = [0.1, -0.025, 0.1, -0.0125]
    assert torch.allclose(optimizer.state[p]["exp_avg"], torch.tensor([3.0, -0.5, 0.1, -1.0]))
    assert torch.allclose(p.detach(), torch.tensor([0.85, -1.875, 0.375, 2.8625]), atol=1e-6, rtol=0)
    assert optimizer.state[p]["step"].item() == 1
    assert optimizer.win_rate.dim() == 0
    assert optimizer.win_rate.item() == 0.5  # coordinates 1 and 3 were not clipped


def test_sophia_maximize_moves_up_the_gradient():
    p = torch.zeros(3, requires_grad=True)
    optimizer = SophiaG([p], lr=0.1, weight_decay=0.0, maximize=True)
    p.grad = torch.tensor([1.0, -1.0, 0.0])
    optimizer.step(bs=1)  # zero Hessian: every nonzero momentum is clipped to a full step
    assert torch.allclose(p.detach(), torch.tensor([0.1, -0.1, 0.0]))
    assert optimizer.win_rate.item() == pytest.approx(1 / 3)


def test_sophia_state_survives_a_weights_only_checkpoint():
    p, optimizer = _sophia_example()
    p.grad = torch.tensor([6.0, -1.0, 0.2, -2.0])
    optimizer.step(bs=4)
    buffer = io.BytesIO()
    torch.save(optimizer.state_dict(), buffer)
    buffer.seek(0)
    q = p.detach().clone().requires_grad_()
    restored = SophiaG([q], lr=0.1, betas=(0.5, 0.75), rho=0.5, weight_decay=0.5)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    for key in ("step", "exp_avg", "hessian"):
        assert torch.equal(restored.state[q][key], optimizer.state[p][key])


def _sophia_cfg(**overrides):
    return OptimConfig(name="sophiag", lr=1e-2, weight_decay=0.2, beta1=0.9, beta2=0.9, rho=0.05,
                       **overrides)


def test_build_sophiag_uses_config_and_decay_groups(model):
    optimizer, hook = build_optimizer(model, _sophia_cfg(), tokens_per_step=96, device_type="cpu")
    assert isinstance(optimizer, SophiaG)
    decay, no_decay = optimizer.param_groups
    assert _ids(decay["params"]) == _ids([model.embed.weight, model.hidden.weight])
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.2, 0.0)
    assert decay["betas"] == (0.9, 0.9) and decay["rho"] == 0.05 and decay["lr"] == 1e-2
    assert hook.step_kwargs() == {"bs": 96}


def _train_step(model, optimizer, hook, inputs):
    optimizer.zero_grad(set_to_none=True)
    logits = model(inputs)
    F.cross_entropy(logits.flatten(0, 1), inputs.roll(-1, dims=1).flatten()).backward()
    optimizer.step(**hook.step_kwargs())


def test_hessian_refreshes_every_interval_and_clears_gradients(model):
    optimizer, hook = build_optimizer(model, _sophia_cfg(hessian_interval=3), 2 * 6, "cpu")
    inputs = torch.randint(0, VOCAB, (2, 6), generator=torch.Generator().manual_seed(1))
    bf16 = functools.partial(torch.autocast, "cpu", dtype=torch.bfloat16)
    refreshed = []
    for step in range(7):
        _train_step(model, optimizer, hook, inputs)
        before = [optimizer.state[p]["hessian"].clone() for p in model.parameters()]
        metrics = hook.after_step(step, model, inputs, bf16)
        after = [optimizer.state[p]["hessian"] for p in model.parameters()]
        changed = any(not torch.equal(b, a) for b, a in zip(before, after))
        if changed:
            refreshed.append(step)
            assert all(p.grad is None for p in model.parameters())
            assert all(torch.isfinite(h).all() for h in after)
        else:
            assert all(p.grad is not None for p in model.parameters())  # untouched
        assert set(metrics) == {"optim/win_rate"}
        assert metrics["optim/win_rate"] is optimizer.win_rate
    assert refreshed == [2, 5]


def test_hessian_refresh_is_the_gauss_newton_bartlett_estimate(model, monkeypatch):
    """The estimate uses only the sampled-label gradient, not the training step's leftovers."""
    reference = copy.deepcopy(model)
    optimizer, hook = build_optimizer(model, _sophia_cfg(hessian_interval=1), 2 * 6, "cpu")
    inputs = torch.randint(0, VOCAB, (2, 6), generator=torch.Generator().manual_seed(2))
    model(inputs).sum().backward()  # gradients left over from a training step
    sampled = []
    monkeypatch.setattr(sophia, "sample_next_tokens",
                        lambda *args: sampled.append(sample_next_tokens(*args)) or sampled[-1])
    hook.after_step(0, model, inputs, contextlib.nullcontext)

    (labels,) = sampled
    assert labels.shape == (2 * 6,) and 0 <= int(labels.min()) and int(labels.max()) < VOCAB
    F.cross_entropy(reference(inputs).flatten(0, 1), labels).backward()
    for p, ref in zip(model.parameters(), reference.parameters()):
        expected = (1 - 0.9) * ref.grad**2  # first update from a zero Hessian, beta2 = 0.9
        assert torch.allclose(optimizer.state[p]["hessian"], expected, rtol=1e-5, atol=1e-12)
    assert any(optimizer.state[p]["hessian"].sum() > 0 for p in model.parameters())


# --- sampling the Hessian's labels --------------------------------------------------------

def test_sampled_labels_follow_the_models_distribution(monkeypatch):
    monkeypatch.setattr(layers, "LOSS_CHUNK_LOGITS", 2**14)  # many chunks of rows
    logits = torch.tensor([2.0, 0.5, -1.0, 1.0, 0.0])
    n = 200_000
    hidden = torch.ones(n, 1)
    torch.manual_seed(0)
    labels = sample_next_tokens(hidden, logits[:, None])  # every row's logits are `logits`
    assert labels.shape == (n,) and labels.dtype == torch.long
    expected = logits.softmax(-1)
    frequencies = torch.bincount(labels, minlength=5).double() / n
    assert (frequencies - expected).abs().max() < 0.005
    chi_square = (n * (frequencies - expected) ** 2 / expected).sum().item()
    assert chi_square < 18.47  # 4 degrees of freedom, p = 0.001


def test_sampled_labels_depend_on_each_rows_logits():
    torch.manual_seed(0)
    hidden = torch.tensor([[30.0], [-30.0]]).repeat(50, 1)  # rows alternately sure of 0 and 2
    weight = torch.tensor([[1.0], [0.0], [-1.0]])
    labels = sample_next_tokens(hidden, weight)
    assert labels.tolist() == [0, 2] * 50


def test_hessian_refresh_never_calls_multinomial(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("torch.multinomial in the Hessian refresh")

    monkeypatch.setattr(torch, "multinomial", refuse)
    torch.manual_seed(0)
    model = build_model(ModelConfig(n_layer=1, n_embd=32, head_dim=16, vocab_size=64, max_seq_len=16))
    inputs = torch.randint(0, 64, (2, 16))
    for step_model in (model, torch.compile(model, backend="eager", fullgraph=True)):
        optimizer, hook = build_optimizer(model, _sophia_cfg(hessian_interval=1), 2 * 16, "cpu")
        hook.after_step(0, step_model, inputs, contextlib.nullcontext)
        hessians = [optimizer.state[p]["hessian"] for p in model.parameters()]
        assert all(torch.isfinite(h).all() for h in hessians)
        assert sum(h.sum() for h in hessians) > 0
        assert all(p.grad is None for p in model.parameters())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_sampling_on_cuda_needs_no_host_sync_and_no_whole_logits():
    # The seed's micro-batch: 64 x 512 rows over a 50304 vocabulary, in bf16.
    hidden = torch.randn(64 * 512, 1024, device="cuda")
    weight = 0.02 * torch.randn(50304, 1024, device="cuda")
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    torch.cuda.set_sync_debug_mode("error")
    try:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            labels = sample_next_tokens(hidden, weight)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    extra = torch.cuda.max_memory_allocated() - before
    whole_logits = 64 * 512 * 50304 * 4
    assert extra < 1.5 * 2**30 < whole_logits / 4
    assert labels.shape == (64 * 512,) and 0 <= int(labels.min()) and int(labels.max()) < 50304
