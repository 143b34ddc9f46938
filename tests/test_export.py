import dataclasses
import json
import re
import sys

import pytest
import torch

from llm_sweep.core.errors import LlmSweepError
from llm_sweep.core.model_config import ModelConfig
from llm_sweep.export import export_hf, export_model, main
from llm_sweep.models.build import build_model
from llm_sweep.training.checkpoint import save_checkpoint

transformers = pytest.importorskip("transformers")

VOCAB = 512


def trained_like_model(arch: str, weight_tying: bool, **parametrization) -> torch.nn.Module:
    """A small model whose norm weights are not all ones, so a swapped or dropped norm
    in the mapping changes the logits."""
    torch.manual_seed(0)
    config = ModelConfig(arch=arch, n_layer=2, n_embd=64, n_head=4, vocab_size=VOCAB,
                         max_seq_len=32, weight_tying=weight_tying, rmsnorm_eps=1e-6, **parametrization)
    model = build_model(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name:
                param.add_(0.2 * torch.randn_like(param))
    return model


def assert_same_logits(model: torch.nn.Module, out_dir) -> None:
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(out_dir).eval()
    idx = torch.randint(0, VOCAB, (2, 32))
    with torch.no_grad():
        diff = (hf_model(idx).logits - model(idx)).abs().max().item()
    assert diff < 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("weight_tying", [True, False])
@pytest.mark.parametrize("arch, hf_class", [("llama", "LlamaForCausalLM"), ("gpt2", "GPT2LMHeadModel")])
def test_exported_model_gives_our_logits(tmp_path, arch, hf_class, weight_tying):
    model = trained_like_model(arch, weight_tying)
    assert export_model(model, tmp_path) == tmp_path
    hf_config = json.loads((tmp_path / "config.json").read_text())
    assert hf_config["architectures"] == [hf_class]
    assert hf_config["tie_word_embeddings"] is weight_tying
    assert (tmp_path / "model.safetensors").is_file()
    assert_same_logits(model, tmp_path)


# Twice the base width at a fixed head count (head size 16 against 8: attention scale
# sqrt(8)/16), and under completep twice the base depth (residual branches x 1/2).
# "tuned": mup with base constants of its own (logits x 4, attention logits x 2 at the base),
# "sp-constants": the same constants on a standard model.
MULTIPLIED = {"mup": dict(parametrization="mup", base_width=32),
              "completep": dict(parametrization="completep", base_width=32, base_depth=1),
              "tuned": dict(parametrization="mup", base_width=32, output_mult=4.0, attn_mult=2.0, init_std=0.05),
              "sp-constants": dict(output_mult=4.0, attn_mult=2.0)}


@pytest.mark.slow
@pytest.mark.parametrize("weight_tying", [True, False])
@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("parametrization", sorted(MULTIPLIED))
def test_an_export_folds_the_multipliers_into_the_weights(tmp_path, arch, weight_tying, parametrization):
    model = trained_like_model(arch, weight_tying, **MULTIPLIED[parametrization])
    with torch.no_grad():  # attention far from uniform, so a wrong attention scale shows
        for block in model.blocks:
            block.attn.qkv.weight.mul_(8.0)
    before = {key: value.clone() for key, value in model.state_dict().items()}
    export_model(model, tmp_path)
    assert_same_logits(model, tmp_path)
    assert all(torch.equal(before[key], value) for key, value in model.state_dict().items())
    # The multipliers matter: the same weights without them give other logits.
    standard = build_model(dataclasses.replace(model.config, parametrization="sp", output_mult=1.0, attn_mult=1.0))
    standard.load_state_dict(model.state_dict())
    idx = torch.randint(0, VOCAB, (2, 32))
    with torch.no_grad():
        assert (standard(idx) - model(idx)).abs().max().item() > 0.01


@pytest.mark.slow
def test_llama_config_carries_the_model_shape(tmp_path):
    model = trained_like_model("llama", weight_tying=True)
    export_model(torch.compile(model), tmp_path)  # the wrapper's prefixed keys are unwrapped
    hf_config = json.loads((tmp_path / "config.json").read_text())
    assert hf_config["intermediate_size"] == 256  # int(8 * 64 / 3) = 170, rounded up to 256
    assert hf_config["num_attention_heads"] == hf_config["num_key_value_heads"] == 4
    assert hf_config["max_position_embeddings"] == 32
    assert hf_config["rms_norm_eps"] == 1e-6
    assert hf_config["vocab_size"] == VOCAB
    assert_same_logits(model, tmp_path)


def checkpoint_payload(model: torch.nn.Module, compiled_keys: bool, tokenizer: str | None = None) -> dict:
    """What training saves: the model state and the run config as a plain dict (without a
    tokenizer, as a checkpoint that does not name one: the model is exported alone)."""
    prefix = "_orig_mod." if compiled_keys else ""
    state = {prefix + key: value for key, value in model.state_dict().items()}
    config = {"model": dataclasses.asdict(model.config), "seed": 1,
              **({"data": {"tokenizer": tokenizer}} if tokenizer else {})}
    return {"model": state, "config": config, "step": 10}


@pytest.mark.slow
def test_export_from_a_checkpoint_file_with_compiled_keys(tmp_path):
    model = trained_like_model("llama", weight_tying=False)
    torch.save(checkpoint_payload(model, compiled_keys=True), tmp_path / "ckpt.pt")
    out_dir = export_hf(tmp_path / "ckpt.pt", tmp_path / "hf")
    assert_same_logits(model, out_dir)


@pytest.mark.slow
def test_command_exports_the_newest_checkpoint_of_a_run_directory(tmp_path, capsys):
    model = trained_like_model("gpt2", weight_tying=True)
    save_checkpoint(tmp_path / "run", 5, checkpoint_payload(build_model(model.config), compiled_keys=False))
    save_checkpoint(tmp_path / "run", 10, checkpoint_payload(model, compiled_keys=False))
    main([str(tmp_path / "run"), str(tmp_path / "hf")])
    assert "exported" in capsys.readouterr().out
    assert_same_logits(model, tmp_path / "hf")


def test_missing_checkpoint_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(LlmSweepError, match="missing.pt"):
        export_hf(tmp_path / "missing.pt", tmp_path / "hf")
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "missing.pt"), str(tmp_path / "hf")])
    assert exit_info.value.code == 2
    assert re.match(r"^error: .*missing.pt", capsys.readouterr().err)


def test_a_foreign_file_is_rejected(tmp_path):
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(LlmSweepError, match="not a training checkpoint"):
        export_hf(tmp_path / "other.pt", tmp_path / "hf")


def test_without_transformers_the_error_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # makes `import transformers` fail
    with pytest.raises(LlmSweepError, match=r"pip install 'llm_sweep\[hf\]'"):
        export_model(trained_like_model("llama", weight_tying=True), tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("tokenizer, vocab, text, ids", [
    ("gpt2", 50304, "Hello world", [15496, 995]),  # tiktoken's GPT-2 ids
    ("bytes", 320, "Hé!", [72, 195, 169, 33]),  # UTF-8 bytes
])
def test_an_export_carries_its_tokenizer_and_generates_through_pipeline(tmp_path, tokenizer, vocab, text, ids):
    """Offline: AutoTokenizer gives the ids training used, end-of-text is bos/eos, and
    pipeline("text-generation") runs on the export."""
    from llm_sweep.data.tokenizer import END_OF_TEXT

    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="llama", n_layer=1, n_embd=64, n_head=1, vocab_size=vocab, max_seq_len=32))
    torch.save(checkpoint_payload(model, compiled_keys=False, tokenizer=tokenizer), tmp_path / "ckpt.pt")
    out_dir = export_hf(tmp_path / "ckpt.pt", tmp_path / "hf")
    loaded = transformers.AutoTokenizer.from_pretrained(out_dir)
    assert loaded(text)["input_ids"] == ids and loaded.decode(ids) == text
    assert loaded.eos_token_id == END_OF_TEXT[tokenizer]
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(out_dir)
    assert hf_model.config.eos_token_id == END_OF_TEXT[tokenizer]
    generate = transformers.pipeline("text-generation", model=str(out_dir), device="cpu")
    (out,) = generate(text, max_new_tokens=5, do_sample=False)
    assert out["generated_text"].startswith(text) and len(out["generated_text"]) > len(text)
