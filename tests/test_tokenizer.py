"""The offline tokenizer produces GPT-2's ids, checked against an independent BPE."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import tiktoken

from llm_sweep.core.data_config import TOKENIZER_VOCAB_SIZES
from llm_sweep.core.errors import DataError
from llm_sweep.data.sources import shakespeare_documents
from llm_sweep.data.tokenizer import (BYTES_EOT, EOT, bundled_bpe_file, decode, encode_document,
                                      gpt2_encoding, mergeable_ranks)

SAMPLES = [
    "Hello world",
    "naïve café in Zürich — déjà vu, œuvre, Ångström",
    "日本語のテキストと中文文本, 한국어",
    "emoji 🚀🔥 and a family 👩‍👩‍👧 and flags 🇨🇭",
    "def square(x):\n\treturn x ** 2  # why not\n\n\nclass A: pass\r\n",
    "   leading, inner    runs,\ttabs\t\tand trailing   \n\n \n",
    "It's they're we've I'm you'll he'd IT'S O'Neill",
    "numbers 1234567 3.14159 -42 1e-9 ٣٤٥",
    "<|endoftext|> inside a document is plain text",
    "",
]

# Ids every GPT-2 user knows; the one-byte ids follow from the byte order of vocab.bpe.
KNOWN_IDS = {"Hello world": [15496, 995], " the": [262], "!": [0], "a": [64], "\n": [198], " ": [220]}

# The splitting regex exactly as published with GPT-2 (the library uses tiktoken's form).
GPT2_RELEASE_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


class ReferenceBPE:
    """GPT-2 byte-level BPE in plain Python, from encoder.json and vocab.bpe alone.

    Each regex piece becomes one printable character per byte, then the adjacent pair
    with the lowest merge rank is joined until no pair has a rank.
    """

    def __init__(self, encoder_json: Path, vocab_bpe: Path):
        regex = pytest.importorskip("regex", reason="the reference BPE needs the regex package "
                                                    "for \\p{L} classes")
        self.pattern = regex.compile(GPT2_RELEASE_PATTERN)
        self.encoder = json.loads(encoder_json.read_text(encoding="utf-8"))
        merges = [line.split() for line in vocab_bpe.read_text(encoding="utf-8").splitlines()[1:] if line]
        self.ranks = {(first, second): rank for rank, (first, second) in enumerate(merges)}
        printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                     *range(ord("®"), ord("ÿ") + 1)]
        others = [b for b in range(256) if b not in printable]
        self.byte_char = {b: chr(b) for b in printable} | {b: chr(256 + i) for i, b in enumerate(others)}

    def encode(self, text: str) -> list[int]:
        ids = []
        for piece in self.pattern.findall(text):
            symbols = [self.byte_char[b] for b in piece.encode("utf-8")]
            while len(symbols) > 1:
                rank, i = min((self.ranks.get(pair, math.inf), i)
                              for i, pair in enumerate(zip(symbols, symbols[1:])))
                if rank == math.inf:
                    break
                symbols[i:i + 2] = [symbols[i] + symbols[i + 1]]
            ids += [self.encoder[symbol] for symbol in symbols]
        return ids


@pytest.fixture(scope="module")
def reference() -> ReferenceBPE:
    return ReferenceBPE(bundled_bpe_file("encoder.json"), bundled_bpe_file("vocab.bpe"))


@pytest.mark.parametrize("text, ids", KNOWN_IDS.items())
def test_known_gpt2_ids(text, ids):
    assert gpt2_encoding().encode_ordinary(text) == ids


def test_encoding_shape_and_end_of_text():
    enc = gpt2_encoding()
    assert enc is gpt2_encoding()  # built once per process
    assert (enc.n_vocab, enc.eot_token, EOT) == (50257, 50256, 50256)
    assert encode_document("Hello world") == [15496, 995, 50256]
    assert encode_document("") == [EOT]
    # the literal marker inside a text is not the special token
    assert EOT not in encode_document("<|endoftext|>")[:-1]


@pytest.mark.parametrize("text", SAMPLES)
def test_ids_match_reference_bpe_and_round_trip(text, reference):
    ids = gpt2_encoding().encode_ordinary(text)
    assert ids == reference.encode(text)
    assert gpt2_encoding().decode(ids) == text


def test_a_play_matches_reference_bpe(reference):
    play = next(shakespeare_documents())[:20_000]
    ids = gpt2_encoding().encode_ordinary(play)
    assert len(ids) > 4_000
    assert ids == reference.encode(play)


def test_pattern_splits_like_tiktokens_current_gpt2_definition():
    openai_public = pytest.importorskip("tiktoken_ext.openai_public")
    if not hasattr(openai_public, "r50k_pat_str"):
        pytest.skip("this tiktoken version keeps the gpt2 pattern inside its networked gpt2()")
    ranks = mergeable_ranks(bundled_bpe_file("vocab.bpe"), bundled_bpe_file("encoder.json"))
    theirs = tiktoken.Encoding(name="gpt2-tiktoken-pattern", pat_str=openai_public.r50k_pat_str,
                               mergeable_ranks=ranks, special_tokens={"<|endoftext|>": EOT})
    texts = [*SAMPLES, next(shakespeare_documents())]
    assert gpt2_encoding().encode_ordinary_batch(texts) == theirs.encode_ordinary_batch(texts)


def test_tampered_vocabulary_is_refused(tmp_path):
    vocab = tmp_path / "vocab.bpe"
    shutil.copy(bundled_bpe_file("vocab.bpe"), vocab)
    with open(vocab, "ab") as file:
        file.write(b"\xc4\xa0t he\n")
    with pytest.raises(DataError, match=r"vocab\.bpe.*expected sha256"):
        mergeable_ranks(vocab, bundled_bpe_file("encoder.json"))


# Tricky for a byte tokenizer: multi-byte characters, a combining mark (e + U+0301), ZWJ
# sequences, NUL and other control bytes, a BOM, the largest code point.
BYTE_SAMPLES = [*SAMPLES, "e\u0301 vs \u00e9", "nul\x00inside\x01\x7f", "\ufeffBOM first",
                "max \U0010ffff", "\u200d\u200b zero widths", "<|endoftext|>"]


@pytest.mark.parametrize("text", BYTE_SAMPLES)
def test_bytes_tokenizer_round_trips_utf8(text):
    ids = encode_document(text, "bytes")
    assert ids[-1] == BYTES_EOT and BYTES_EOT not in ids[:-1]
    assert ids[:-1] == list(text.encode("utf-8")) and all(0 <= i < 256 for i in ids[:-1])
    assert decode(ids[:-1], "bytes") == text
    assert decode(ids, "bytes") == text + "<|endoftext|>"


def test_bytes_tokenizer_ids_fit_its_vocabulary_constant():
    ids = encode_document("".join(BYTE_SAMPLES), "bytes")
    assert max(ids) + 1 == TOKENIZER_VOCAB_SIZES["bytes"] == 257
    assert encode_document("", "bytes") == [BYTES_EOT]
    assert encode_document("Hello world") == encode_document("Hello world", "gpt2") == [15496, 995, EOT]
    assert decode([15496, 995]) == "Hello world"
