"""Export a trained checkpoint as a Hugging Face transformers model directory.

    python -m llm_sweep.export CHECKPOINT_OR_RUN_DIR OUT_DIR

The result loads with `AutoModelForCausalLM.from_pretrained(OUT_DIR)`: a
LlamaForCausalLM for `arch: llama`, a GPT2LMHeadModel for `arch: gpt2`; the run's tokenizer
(`data.tokenizer`: gpt2 or bytes) is written beside it (data/hf_tokenizer.py), so
`AutoTokenizer.from_pretrained(OUT_DIR)` and `pipeline("text-generation", OUT_DIR)` work
offline, with end-of-text as the model's bos/eos. Each model's
conversion lives beside it (models/llama_hf.py, models/gpt2_hf.py). A mup or completep
model's multipliers (logits, residual branches, attention scale) are folded into its
weights first (models.parametrization.folded_state): the exported model is a standard one
with the same logits.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

from torch import nn

from llm_sweep.core import console
from llm_sweep.core.console import user_errors
from llm_sweep.core.errors import DataError, LlmSweepError
from llm_sweep.data.hf_tokenizer import END_OF_TEXT_IDS, save_tokenizer
from llm_sweep.models import gpt2_hf, llama_hf
from llm_sweep.models.build import unwrap
from llm_sweep.models.parametrization import folded_state
from llm_sweep.training.checkpoint import load_checkpoint, load_model, resolve_checkpoint

CONVERTERS = {"llama": llama_hf.to_hf, "gpt2": gpt2_hf.to_hf}


def export_model(model: nn.Module, out_dir: str | Path, tokenizer: Optional[str] = None) -> Path:
    """Write an in-memory model (compiled or not) as a transformers model directory, fp32
    safetensors, with `tokenizer` (data.tokenizer) beside it when given."""
    try:
        import transformers  # an optional extra: llm_sweep[hf]
    except ImportError as exc:
        raise LlmSweepError("exporting needs transformers: pip install 'llm_sweep[hf]'") from exc
    model = unwrap(model)
    state = {key: value.detach().float().cpu() for key, value in model.state_dict().items()}
    hf_model = CONVERTERS[model.config.arch](transformers, model.config, folded_state(state, model.config))
    out_dir = Path(out_dir)
    if tokenizer is not None:
        end_of_text = END_OF_TEXT_IDS[tokenizer]
        if model.config.vocab_size <= end_of_text:
            raise DataError(f"the model's vocabulary ({model.config.vocab_size}) does not hold data.tokenizer="
                            f"{tokenizer}'s ids (end-of-text {end_of_text})")
        for config in (hf_model.config, hf_model.generation_config):
            config.bos_token_id = config.eos_token_id = config.pad_token_id = end_of_text
        save_tokenizer(transformers, tokenizer, out_dir, model.config.max_seq_len)
    hf_model.save_pretrained(out_dir)
    return out_dir


def export_hf(checkpoint_path: str | Path, out_dir: str | Path) -> Path:
    """Write the checkpoint (a file or a run directory) as a transformers model, with the
    run's tokenizer, to out_dir."""
    path = resolve_checkpoint(Path(checkpoint_path))
    tokenizer = load_checkpoint(path)["config"].get("data", {}).get("tokenizer")
    if tokenizer is None:
        console.warn(f"{path} does not name its tokenizer (data.tokenizer): the model is exported without one")
    return export_model(load_model(path), out_dir, tokenizer)


@user_errors
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m llm_sweep.export", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a checkpoint file, or a run directory (its newest checkpoint)")
    parser.add_argument("out_dir", help="the transformers model directory to write")
    console.configure_logging()
    args = parser.parse_args(argv)
    out_dir = export_hf(args.checkpoint, args.out_dir)
    console.show(f"exported {args.checkpoint} to {out_dir}")


if __name__ == "__main__":
    main()
