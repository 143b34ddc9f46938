import functools
import math

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch.utils._python_dispatch import TorchDispatchMode

from llm_sweep.core.errors import ConfigError
from llm_sweep.core.model_config import ModelConfig
from llm_sweep.models import layers
from llm_sweep.models.build import build_model
from llm_sweep.models.gpt2 import GPT2
from llm_sweep.models.layers import RMSNorm, apply_rotary, linear_cross_entropy, rotary_tables
from llm_sweep.models.llama import Llama

VOCAB = 512


def tiny(arch: str, **overrides) -> ModelConfig:
    settings = dict(arch=arch, n_layer=2, n_embd=64, head_dim=16, vocab_size=VOCAB, max_seq_len=64)
    return ModelConfig(**{**settings, **overrides})


def meta_model(**settings):
    with torch.device("meta"):
        return build_model(settings)


# --- construction and the state_dict format ---------------------------------------------

def test_build_model_accepts_dataclass_dict_and_dictconfig():
    assert isinstance(build_model(tiny("gpt2")), GPT2)
    assert isinstance(build_model({"arch": "llama", "n_layer": 1, "n_embd": 64, "head_dim": 16}), Llama)
    model = build_model(OmegaConf.create({"arch": "llama", "n_layer": 1, "n_embd": 64, "n_head": 2}))
    assert model.config.heads == 2 and model.blocks[0].attn.n_head == 2


def test_build_model_rejects_unknown_keys_and_archs():
    with pytest.raises(ConfigError, match="model.n_heads"):
        build_model({"arch": "llama", "n_heads": 4})
    with pytest.raises(ConfigError, match="model.arch='mamba'"):
        build_model({"arch": "mamba"})


@pytest.mark.parametrize("arch, mlp_key, extra", [
    ("llama", "mlp.gate_up.weight", []),
    ("gpt2", "mlp.fc.weight", ["pos_emb.weight"]),
])
def test_state_dict_keys_are_the_documented_checkpoint_format(arch, mlp_key, extra):
    model = build_model(tiny(arch, n_layer=1))
    block = ["attn_norm.weight", "attn.qkv.weight", "attn.out_proj.weight",
             "mlp_norm.weight", mlp_key, "mlp.out_proj.weight"]
    expected = ["tok_emb.weight", *extra, *("blocks.0." + k for k in block), "norm.weight", "lm_head.weight"]
    assert list(model.state_dict()) == expected  # RoPE tables are non-persistent buffers


def test_rope_tables_are_fp32_buffers_of_half_the_head_size():
    model = build_model(tiny("llama", n_embd=64, n_head=2))
    assert model.rope_cos.shape == model.rope_sin.shape == (64, 16)
    assert model.rope_cos.dtype == torch.float32


def test_init_follows_gpt2():
    model = build_model(tiny("llama", n_embd=128, n_layer=2))
    block = model.blocks[0]
    assert block.attn.qkv.weight.std().item() == pytest.approx(0.02, rel=0.03)
    residual_std = 0.02 / math.sqrt(2 * 2)
    assert block.attn.out_proj.weight.std().item() == pytest.approx(residual_std, rel=0.03)
    assert block.mlp.out_proj.weight.std().item() == pytest.approx(residual_std, rel=0.03)
    assert torch.equal(block.attn_norm.weight, torch.ones(128))


# --- parameter and FLOP counts ----------------------------------------------------------

def test_parameter_counts_of_the_llama_presets():
    wide3 = meta_model(arch="llama", n_layer=10, n_head=16, n_embd=1024, vocab_size=50304)
    noam = meta_model(arch="llama", n_layer=10, n_head=12, n_embd=768, vocab_size=50304)
    assert wide3.config.mlp_hidden == 2816 and noam.config.mlp_hidden == 2048
    assert wide3.num_params() == 179_983_360
    assert noam.num_params() == 109_428_480
    assert noam.num_params(non_embedding=True) == 109_428_480 - 50304 * 768


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_tied_weights_are_counted_once(arch):
    tied, untied = build_model(tiny(arch)), build_model(tiny(arch, weight_tying=False))
    assert tied.lm_head.weight is tied.tok_emb.weight
    assert untied.num_params() - tied.num_params() == VOCAB * 64
    assert untied.num_params(non_embedding=True) == tied.num_params(non_embedding=True)


def test_gpt2_counts_and_flops_per_token():
    model = build_model(tiny("gpt2"))  # C=64, L=2, V=512, 64 positions
    per_layer = 4 * 64 * 64 + 2 * 4 * 64 * 64 + 2 * 64  # attention, MLP, two norms
    without_positions = 512 * 64 + 2 * per_layer + 64
    assert without_positions == 131_392
    assert model.num_params() == without_positions + 64 * 64
    assert model.num_params(non_embedding=True) == 2 * per_layer + 64
    assert model.flops_per_token(64) == 6 * 131_392 + 12 * 2 * 64 * 64 == 886_656


# --- forward ----------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_forward_shapes_and_initial_loss_is_uniform(arch):
    torch.manual_seed(0)
    model = build_model(tiny(arch))
    idx, targets = torch.randint(0, VOCAB, (2, 8, 64)).unbind(0)
    logits = model(idx)
    assert logits.shape == (8, 64, VOCAB)
    logits_again, loss = model(idx, targets)
    assert torch.equal(logits, logits_again)
    assert loss.shape == () and loss.dtype == torch.float32
    assert loss.item() == pytest.approx(math.log(VOCAB), abs=0.1)


def test_sequences_longer_than_max_seq_len_are_rejected():
    model = build_model(tiny("llama", max_seq_len=16))
    with pytest.raises(ValueError, match="max_seq_len=16"):
        model(torch.zeros(1, 17, dtype=torch.long))


# --- RoPE and RMSNorm -------------------------------------------------------------------

def rotate(x: torch.Tensor, position: int, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    return apply_rotary(x, cos[position:position + 1], sin[position:position + 1])


def test_rope_scores_depend_only_on_relative_position():
    torch.manual_seed(0)
    cos, sin = rotary_tables(64, 16)
    q, k = torch.randn(2, 1, 16).unbind(0)
    for m, n, shift in [(0, 5, 7), (3, 3, 20), (10, 2, 31)]:
        score = (rotate(q, m, cos, sin) * rotate(k, n, cos, sin)).sum()
        shifted = (rotate(q, m + shift, cos, sin) * rotate(k, n + shift, cos, sin)).sum()
        assert torch.allclose(score, shifted, atol=1e-5)
    different = (rotate(q, 0, cos, sin) * rotate(k, 9, cos, sin)).sum()
    assert not torch.allclose(score, different, atol=1e-3)


def test_rope_equals_a_complex_rotation_of_half_pairs():
    torch.manual_seed(0)
    T, head, theta = 32, 16, 10000.0
    x = torch.randn(2, 3, T, head)
    cos, sin = rotary_tables(T, head, theta)
    # Reference: dims (i, i + head/2) form the complex number x_i + j x_{i+head/2}, multiplied
    # by e^{j t theta^(-2i/head)} in float64.
    half = head // 2
    freqs = theta ** (-torch.arange(half, dtype=torch.float64) * 2 / head)
    angles = torch.arange(T, dtype=torch.float64)[:, None] * freqs
    z = torch.complex(x[..., :half].double(), x[..., half:].double())
    rotated = z * torch.polar(torch.ones_like(angles), angles)
    expected = torch.cat((rotated.real, rotated.imag), dim=-1).float()
    assert torch.allclose(apply_rotary(x, cos, sin), expected, atol=1e-5)


def test_rope_keeps_the_input_dtype():
    cos, sin = rotary_tables(8, 16)
    assert apply_rotary(torch.randn(1, 8, 16, dtype=torch.bfloat16), cos, sin).dtype == torch.bfloat16


def test_rmsnorm_in_bf16_is_the_fp32_result_rounded_once():
    torch.manual_seed(0)
    norm = RMSNorm(256, eps=1e-5)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(256))
    x = (3 * torch.randn(4, 256)).bfloat16()
    out = norm(x)
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, norm(x.float()).to(torch.bfloat16))
    x32 = x.float()
    expected = x32 / torch.sqrt(x32.pow(2).mean(-1, keepdim=True) + 1e-5) * norm.weight
    assert torch.allclose(norm(x32), expected, atol=1e-5)
    # Computing in bf16 throughout rounds at every step and gives different values.
    naive = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * norm.weight.bfloat16()
    assert not torch.equal(out, naive)


# --- torch.compile ----------------------------------------------------------------------

def compiled_matches_eager(arch: str, backend: str) -> None:
    torch.manual_seed(0)
    model = build_model(tiny(arch, n_layer=1))
    idx, targets = torch.randint(0, VOCAB, (2, 2, 32)).unbind(0)
    _, eager_loss = model(idx, targets)
    eager_loss.backward()
    eager_grad = model.blocks[0].attn.qkv.weight.grad.clone()
    model.zero_grad()
    compiled = torch.compile(model, backend=backend, fullgraph=True)
    _, loss = compiled(idx, targets)
    loss.backward()
    assert torch.allclose(loss, eager_loss, atol=1e-5)
    assert torch.allclose(model.blocks[0].attn.qkv.weight.grad, eager_grad, atol=1e-6)


@pytest.mark.slow
def test_llama_compiles_fullgraph_with_inductor():
    compiled_matches_eager("llama", backend="inductor")


@pytest.mark.slow
def test_gpt2_traces_fullgraph_forward_and_backward():
    # aot_eager traces forward and backward graphs like inductor, without code generation.
    compiled_matches_eager("gpt2", backend="aot_eager")


# --- generate ---------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_generate_appends_max_new_tokens(arch):
    torch.manual_seed(0)
    model = build_model(tiny(arch)).eval()
    prompt = torch.randint(0, VOCAB, (3, 5))
    out = model.generate(prompt, max_new_tokens=7, temperature=0.8, top_k=20)
    assert out.shape == (3, 12)
    assert torch.equal(out[:, :5], prompt)
    assert int(out.min()) >= 0 and int(out.max()) < VOCAB


def test_top_k_1_is_greedy_decoding():
    torch.manual_seed(0)
    model = build_model(tiny("llama")).eval()
    prompt = torch.randint(0, VOCAB, (2, 4))
    expected = prompt
    for _ in range(6):
        next_token = model(expected)[:, -1].argmax(dim=-1, keepdim=True)
        expected = torch.cat((expected, next_token), dim=1)
    for seed in (1, 2):
        torch.manual_seed(seed)
        assert torch.equal(model.generate(prompt, max_new_tokens=6, top_k=1), expected)


def test_generate_crops_the_context_to_max_seq_len():
    torch.manual_seed(0)
    model = build_model(tiny("gpt2", max_seq_len=16)).eval()
    prompt = torch.randint(0, VOCAB, (1, 20))
    out = model.generate(prompt, max_new_tokens=4, top_k=1)
    assert out.shape == (1, 24)
    # The first new token only sees the last 16 prompt tokens.
    assert out[0, 20] == model(prompt[:, -16:])[0, -1].argmax()


# --- the training loss: plain, fused in one chunk, fused in many ------------------------

CHUNKINGS = [0, 1, 7]  # plain cross-entropy; the fused head whole; 7 chunks, the last shorter


def head_problem(rows: int = 200, width: int = 32, vocab: int = VOCAB):  # 7 chunks: 6 x 29, 26
    torch.manual_seed(0)
    hidden = torch.randn(rows, width, requires_grad=True)
    weight = (0.3 * torch.randn(vocab, width)).requires_grad_()
    return hidden, weight, torch.randint(0, vocab, (rows,))


def loss_and_grads(hidden, weight, targets, chunks):
    loss = linear_cross_entropy(hidden, weight, targets, chunks=chunks)
    return (loss, *torch.autograd.grad(3 * loss, (hidden, weight)))  # a scale reaches them


@pytest.mark.parametrize("chunks", CHUNKINGS)
def test_every_loss_chunking_gives_the_cross_entropy_and_its_gradients(chunks):
    hidden, weight, targets = head_problem()
    reference = F.cross_entropy(hidden @ weight.t(), targets)
    expected = (reference, *torch.autograd.grad(3 * reference, (hidden, weight)))
    for got, want in zip(loss_and_grads(hidden, weight, targets, chunks), expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # evaluation: the loss alone
        torch.testing.assert_close(linear_cross_entropy(hidden, weight, targets, chunks=chunks),
                                   reference, rtol=1e-5, atol=1e-5)


def test_loss_chunkings_agree_under_bf16_autocast():
    hidden, weight, targets = head_problem()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        plain = loss_and_grads(hidden, weight, targets, 0)
        for chunks in (1, 7):
            fused = loss_and_grads(hidden, weight, targets, chunks)
            assert fused[0].dtype == torch.float32
            # The same bf16 logits, then an fp32 softmax: the loss up to summation order;
            # the gradients are bf16 matmul products (fp32 sums of bf16 chunk products).
            torch.testing.assert_close(fused[0], plain[0], rtol=1e-5, atol=1e-5)
            for got, want in zip(fused[1:], plain[1:]):
                torch.testing.assert_close(got, want, rtol=0.02, atol=0.01 * want.abs().max().item())


def test_the_model_passes_its_loss_chunks_and_none_is_the_device_default(monkeypatch):
    seen = []
    real = layers.linear_cross_entropy
    monkeypatch.setattr(layers, "linear_cross_entropy",
                        lambda *args, chunks: seen.append(chunks) or real(*args, chunks=chunks))
    model = build_model(tiny("llama", n_layer=1))
    idx, targets = torch.randint(0, VOCAB, (2, 2, 16)).unbind(0)
    assert model.loss_chunks is None
    model(idx, targets, return_logits=False)
    model.loss_chunks = 3
    model(idx, targets, return_logits=False)
    assert seen == [None, 3]
    assert layers.default_loss_chunks("cuda") == 1  # a micro-batch's bf16 logits fit a GPU
    assert layers.default_loss_chunks("cpu") is None  # memory-bounded: as fast, least memory


class RecordOps(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.names: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(str(func))
        return func(*args, **(kwargs or {}))


def test_the_fused_gradient_has_no_scatter_into_the_softmax():
    # The one-hot is a comparison that compiled code fuses into the softmax's elementwise pass.
    hidden, weight, targets = head_problem(rows=16)
    with RecordOps() as ops:
        linear_cross_entropy(hidden, weight, targets, chunks=2).backward()
    assert ops.names and not [name for name in ops.names if "scatter" in name or "index_put" in name]


@pytest.mark.slow
@pytest.mark.parametrize("chunks", [0, 1, 3])
def test_each_loss_chunking_traces_as_one_graph_forward_and_backward(chunks):
    torch.manual_seed(0)
    model = build_model(tiny("llama", n_layer=1))
    idx, targets = torch.randint(0, VOCAB, (2, 2, 24)).unbind(0)  # 48 rows: 3 chunks of 16
    _, expected = model(idx, targets)
    model.loss_chunks = chunks
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)  # a graph break raises
    _, loss = compiled(idx, targets, return_logits=False)
    loss.backward()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert model.tok_emb.weight.grad is not None


@pytest.mark.slow
@pytest.mark.parametrize("chunks", [1, 3])
def test_the_fused_loss_compiles_fullgraph_with_inductor(chunks):
    hidden, weight, targets = head_problem(rows=48)
    expected = loss_and_grads(hidden, weight, targets, 0)
    compiled = torch.compile(functools.partial(linear_cross_entropy, chunks=chunks), fullgraph=True)
    loss = compiled(hidden, weight, targets)
    got = (loss, *torch.autograd.grad(3 * loss, (hidden, weight)))
    for value, want in zip(got, expected):
        torch.testing.assert_close(value, want, rtol=1e-5, atol=1e-5)


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
def test_loss_chunkings_agree_on_cuda_in_bf16():
    # Compiled, the fused loss is checked by test_bench's compiled bf16 step on CUDA.
    torch.manual_seed(0)
    model = build_model(ModelConfig(n_layer=1, n_embd=128, max_seq_len=128)).cuda()  # V = 50304
    idx, targets = torch.randint(0, 50304, (2, 4, 128), device="cuda").unbind(0)
    results = []
    for chunks in (0, 1, 5, None):  # None: 1 on CUDA
        model.loss_chunks = chunks
        model.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            _, loss = model(idx, targets, return_logits=False)
        loss.backward()
        results.append((loss.detach(), model.lm_head.weight.grad.clone()))
    plain_loss, plain_grad = results[0]
    for loss, grad in results[1:]:
        torch.testing.assert_close(loss, plain_loss, rtol=2e-3, atol=2e-3)
        torch.testing.assert_close(grad, plain_grad, rtol=0.05, atol=0.02 * plain_grad.abs().max().item())


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("weight_tying", [True, False])
def test_counts_from_the_config_equal_the_built_models_parameters(arch, weight_tying):
    from llm_sweep.core.size import flops_per_token, param_count

    config = ModelConfig(arch=arch, n_layer=3, n_embd=192, head_dim=64, vocab_size=1000,
                         max_seq_len=77, weight_tying=weight_tying, multiple_of=32)
    model = build_model(config)
    unique = {id(p): p for p in model.parameters()}.values()
    tables = {"tok_emb.weight", "lm_head.weight", "pos_emb.weight"}
    body = sum(p.numel() for name, p in model.named_parameters() if name not in tables)
    assert param_count(config) == sum(p.numel() for p in unique)
    assert param_count(config, non_embedding=True) == body
    positions = model.pos_emb.weight.numel() if arch == "gpt2" else 0
    assert flops_per_token(config, 64) == 6 * (param_count(config) - positions) + 12 * 3 * 192 * 64
