import math

import pytest
import torch
from omegaconf import OmegaConf

from llm_sweep.errors import ConfigError
from llm_sweep.models import GPT2, Llama, ModelConfig, build_model
from llm_sweep.models.layers import RMSNorm, apply_rotary, rotary_tables

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
