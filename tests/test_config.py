"""The Hydra config: presets compose, schemas reject typos, cross-field checks name the key."""
from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException

from llm_sweep.core.budget import parse_duration
from llm_sweep.core.config import CONF_DIR, RunConfig, load_config, register_configs
from llm_sweep.core.errors import ConfigError

register_configs()


def compose_run(*overrides: str) -> RunConfig:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return load_config(compose(config_name="config", overrides=list(overrides)))


def test_default_config_is_the_tiny_cpu_run():
    run = compose_run()
    assert (run.model.name, run.model.arch, run.data.name) == ("tiny", "llama", "shakespeare")
    assert run.data.tokenizer == "bytes" and run.budget.time_s == 30.0  # learns visibly in a minute
    assert run.tracking.backend == "mlflow"


def test_wide3_adamw_is_the_seeds_final_shape():
    run = compose_run("model=wide3", "optim=adamw", "batch=a100")
    assert (run.model.n_layer, run.model.heads, run.model.n_embd) == (10, 16, 1024)
    assert run.batch.tokens_per_step == 64 * 4 * 512
    assert (run.optim.lr, run.optim.weight_decay, run.optim.grad_clip) == (1e-3, 0.1, 1.0)


def test_lauzhack_final_experiment_composes():
    run = compose_run("experiment=lauzhack_final")
    assert run.model.name == "wide3" and run.data.name == "slimpajama"
    assert run.batch.micro_batch_size == 64 and run.batch.grad_accum == 4
    assert run.budget.time_s == 3 * 3600


def test_sophiag_preset_matches_the_seed():
    run = compose_run("optim=sophiag")
    o = run.optim
    assert (o.lr, o.weight_decay, o.rho, o.hessian_interval, o.beta1, o.beta2) == (
        6e-4, 0.2, 0.05, 10, 0.965, 0.99)


def test_n_head_follows_width_when_unset():
    run = compose_run("model.n_embd=768", "model.n_head=null")
    assert run.model.heads == 12


@pytest.mark.parametrize("override", ["model.n_embdd=3", "optim.lr=fast", "batch.seq_len=1.5"])
def test_typos_and_wrong_types_fail_at_composition(override):
    with pytest.raises(ConfigCompositionException):
        compose_run(override)


@pytest.mark.parametrize("overrides, message", [
    (["model.n_head=3"], "model.n_embd=128 is not divisible by model.n_head=3"),
    (["model.n_embd=120", "model.n_head=2"], "multiple of 8"),
    (["batch.seq_len=4096"], "batch.seq_len=4096 exceeds model.max_seq_len=256"),
    (["budget.time=-5"], "budget.time"),
    (["budget.time=soon"], "budget.time='soon' is not allowed: must be a duration > 0"),
    (["budget.time=null"], "set at least one of budget.time"),
    (["device=tpu"], "device='tpu' is not one of auto, cpu, cuda"),
    (["dtype=fp16"], "dtype='fp16' is not one of auto, bf16, fp32"),
    (["optim.name=lion"], "optim.name='lion' is not one of adamw, sophiag"),
    (["model.arch=mamba"], "model.arch='mamba' is not one of gpt2, llama"),
    (["resume=/no/such/ckpt.pt"], "resume='/no/such/ckpt.pt'"),
])
def test_cross_field_checks_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=None) as info:
        compose_run(*overrides)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_head_size_not_multiple_of_64_warns():
    with pytest.warns(UserWarning, match="not a multiple of 64"):
        compose_run("model.n_embd=96", "model.n_head=3")


@pytest.mark.parametrize("text, seconds", [("3h", 10800), ("90m", 5400), ("45s", 45),
                                           ("1.5h", 5400), ("120", 120), (30, 30)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("overrides, vocab", [
    ((), 320),  # the tiny default reads bytes: 256 bytes + end-of-text, padded to a multiple of 64
    (("data.tokenizer=gpt2",), 50304),  # GPT-2's 50257 ids, padded
    (("data.tokenizer=bytes", "model.vocab_size=257"), 257),  # as set
    (("model=wide3",), 50304),
])
def test_the_vocabulary_follows_the_tokenizer_unless_set(overrides, vocab):
    assert compose_run(*overrides).model.vocab_size == vocab


def test_a_model_config_without_data_uses_the_default_tokenizers_vocabulary():
    from llm_sweep.core.model_config import ModelConfig
    from llm_sweep.core.size import param_count
    from llm_sweep.models.build import build_model
    from llm_sweep.plan.presets import load_presets

    assert build_model({"n_layer": 1, "n_embd": 64}).config.vocab_size == 50304
    assert param_count(ModelConfig(n_layer=1, n_embd=64)) == param_count(
        ModelConfig(n_layer=1, n_embd=64, vocab_size=50304))
    assert {preset.vocab_size for preset in load_presets()} == {50304}
