"""Tokenize a dataset once into train/val token shards, shared through a cache.

A cache entry `<cache>/<name>-<key>/` (train.bin, val.bin, meta.json) is named by a
hash of everything that decides its contents and is built under a file lock: when
the jobs of a sweep start together on a cold cache, one tokenizes and the others
wait, then reuse its shards.

The validation split is deterministic and disjoint from training:
- with at least TAIL_SPLIT_BELOW_DOCS documents, whole documents: the first
  ceil(val_fraction * n) of a permutation drawn from split_seed (slimpajama: datasets'
  `train_test_split` with the same fraction and seed);
- with fewer (the 38 plays), a document sample would be too coarse to be
  representative, so the last ceil(val_fraction * len) tokens of every document go
  to validation and split_seed is unused.
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from filelock import FileLock, Timeout
from tqdm import tqdm

from llm_sweep.core import console
from llm_sweep.core.data_config import DataConfig
from llm_sweep.core.errors import DataError
from llm_sweep.data.english import english_documents, english_fingerprint
from llm_sweep.data.shards import TokenShard
from llm_sweep.data.sources import (files_fingerprint, hub_or_files_fingerprint, load_records, record_files,
                                    require_hub, shakespeare_documents, shakespeare_fingerprint,
                                    text_documents, text_files)
from llm_sweep.data.tokenizer import encode_document, gpt2_encoding

if TYPE_CHECKING:
    import datasets  # seconds to import: only for record files and the hub

CACHE_FORMAT = 1  # bump when tokenization or the split rule changes
TAIL_SPLIT_BELOW_DOCS = 100
_WRITE_BATCH_DOCS = 10_000


@dataclass(frozen=True)
class Splits:
    train: TokenShard
    val: TokenShard
    cache_dir: Path


def prepare_dataset(cfg: DataConfig, progress: bool = True) -> Splits:
    """The dataset's token shards, tokenized now unless the cache already holds them.

    `cfg` holds allowed values (see its rules in llm_sweep.core.data_config).
    """
    key = cache_key(cfg)
    entry = cache_entry(cfg, key)
    # Shards only ever appear complete (atomic renames), so a warm cache needs no lock,
    # which also lets jobs read a cache they cannot write.
    splits = _open_cached(entry, progress=False)
    if splits is None:
        entry.parent.mkdir(parents=True, exist_ok=True)
        with _exclusive(entry, progress):
            splits = _open_cached(entry, progress)
            if splits is None:
                if progress:
                    console.show(f"preparing {cfg.name} in {entry}")
                splits = _prepare(cfg, key, entry, progress)
    if progress:
        console.show(f"{cfg.name}: train {len(splits.train):,} tokens, val {len(splits.val):,} tokens "
              f"-> {entry}")
    return splits


def cache_entry(cfg: DataConfig, key: dict[str, Any]) -> Path:
    """The folder of the shards that `key` (cache_key) describes."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return cache_root(cfg.cache_dir) / f"{cfg.name}-{digest}"


def cached_splits(cfg: DataConfig) -> Splits | None:
    """The dataset's shards when the cache holds them; nothing is prepared or downloaded."""
    try:
        return _open_cached(cache_entry(cfg, cache_key(cfg)), progress=False)
    except DataError:  # its inputs are missing: the job will say so
        return None


def check_inputs(cfg: DataConfig) -> None:
    """Fail now, in one line, when the data's inputs are missing (a file, a folder) or out of
    reach (the hub, offline): before a run is recorded anywhere. Cached data needs neither."""
    if cached_splits(cfg) is not None:
        return
    cache_key(cfg)  # reads every input's size and date: a missing one is a DataError
    if cfg.name == "slimpajama" and record_files(cfg.source) is None:
        require_hub(cfg.source)


def cache_root(cache_dir: str | None) -> Path:
    return Path(cache_dir or os.environ.get("LLM_SWEEP_CACHE") or "~/.cache/llm_sweep").expanduser()


def cache_key(cfg: DataConfig) -> dict[str, Any]:
    """Everything that decides the shards' contents; local inputs by size and mtime."""
    if cfg.name == "shakespeare":
        source = shakespeare_fingerprint()
    elif cfg.name == "english":
        source = english_fingerprint()
    elif cfg.name == "text":
        source = {"files": files_fingerprint(text_files(cfg.paths))}
    elif cfg.source:
        source = hub_or_files_fingerprint(cfg.source)
    else:
        raise DataError("data.name=slimpajama needs data.source: a hub id or a local JSONL/Parquet path")
    return {"name": cfg.name, "source": source, "tokenizer": cfg.tokenizer,
            "val_fraction": cfg.val_fraction, "split_seed": cfg.split_seed, "format": CACHE_FORMAT}


def split_tokens(docs: Sequence[np.ndarray], val_fraction: float,
                 split_seed: int) -> tuple[list[np.ndarray], list[np.ndarray], str]:
    """(train pieces, val pieces, rule) for tokenized documents, by the rule in the module doc."""
    if len(docs) < TAIL_SPLIT_BELOW_DOCS:
        cuts = [len(doc) - max(1, math.ceil(val_fraction * len(doc))) for doc in docs]
        return ([doc[:cut] for doc, cut in zip(docs, cuts)],
                [doc[cut:] for doc, cut in zip(docs, cuts)], "document tails")
    order = np.random.default_rng(split_seed).permutation(len(docs))
    is_val = np.zeros(len(docs), dtype=bool)
    is_val[order[:max(1, math.ceil(val_fraction * len(docs)))]] = True
    return ([doc for doc, val in zip(docs, is_val) if not val],
            [doc for doc, val in zip(docs, is_val) if val], "documents")


@contextmanager
def _exclusive(entry: Path, progress: bool) -> Iterator[None]:
    lock = FileLock(f"{entry}.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if progress:
            console.show(f"waiting for another process to finish preparing {entry}")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def _open_cached(entry: Path, progress: bool) -> Splits | None:
    if not any((entry / name).exists() for name in ("train.bin", "val.bin")):
        return None
    try:
        return Splits(TokenShard.open(entry / "train.bin"), TokenShard.open(entry / "val.bin"), entry)
    except DataError as err:
        if progress:
            console.show(f"cache entry {entry} is incomplete or damaged, preparing it again ({err})")
        return None


def _prepare(cfg: DataConfig, key: dict[str, Any], entry: Path, progress: bool) -> Splits:
    # a fresh directory: drops whatever a killed or failed preparation left behind
    shutil.rmtree(entry, ignore_errors=True)
    entry.mkdir()
    try:
        if cfg.name == "slimpajama":
            train, val, info = _write_records(cfg, entry, progress)
        else:
            train, val, info = _write_documents(cfg, entry, progress)
    except BaseException:
        shutil.rmtree(entry, ignore_errors=True)
        raise
    meta = {**key, **info, "train_tokens": len(train), "val_tokens": len(val),
            "prepared_by_pid": os.getpid(), "prepared_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    tmp = entry / ".meta.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2) + "\n")
    os.replace(tmp, entry / "meta.json")
    return Splits(train, val, entry)


def _write_documents(cfg: DataConfig, entry: Path,
                     progress: bool) -> tuple[TokenShard, TokenShard, dict[str, Any]]:
    """Shakespeare, english and text: small enough to tokenize in memory, on threads."""
    texts = list(_documents(cfg))
    if not texts:
        raise DataError(f"data.paths={list(cfg.paths)} holds no documents (every record is empty)")
    if cfg.tokenizer == "gpt2":
        gpt2_encoding()  # build once, before the threads share it
    encode = functools.partial(_encode_uint16, tokenizer=cfg.tokenizer)
    with ThreadPoolExecutor(max_workers=_workers(cfg.num_proc)) as pool:
        docs = list(tqdm(pool.map(encode, texts), total=len(texts), desc=f"tokenize {cfg.name}",
                         unit="docs", disable=not progress))
    train, val, rule = split_tokens(docs, cfg.val_fraction, cfg.split_seed)
    for split, pieces in (("train", train), ("validation", val)):
        if not any(len(piece) for piece in pieces):
            raise DataError(f"data.val_fraction={cfg.val_fraction} leaves the {split} split of "
                            f"{cfg.name} empty ({len(docs)} documents, {sum(map(len, docs)):,} tokens)")
    shards = [TokenShard.write(entry / f"{split}.bin",
                               tqdm(pieces, desc=f"write {split}", unit="docs", disable=not progress))
              for split, pieces in (("train", train), ("val", val))]
    return shards[0], shards[1], {"documents": len(docs), "split": rule}


def _documents(cfg: DataConfig) -> Iterator[str]:
    if cfg.name == "shakespeare":
        return shakespeare_documents()
    if cfg.name == "english":
        return english_documents()
    return text_documents(cfg.paths)


def _encode_uint16(text: str, tokenizer: str) -> np.ndarray:
    return np.array(encode_document(text, tokenizer), dtype=np.uint16)


def _write_records(cfg: DataConfig, entry: Path,
                   progress: bool) -> tuple[TokenShard, TokenShard, dict[str, Any]]:
    """SlimPajama: tokenized by datasets worker processes, streamed to the shards."""
    with tempfile.TemporaryDirectory(dir=entry, prefix=".scratch-") as scratch, \
            _datasets_progress(progress):
        records = load_records(cfg.source, Path(scratch), cfg.num_proc)
        workers = min(_workers(cfg.num_proc), len(records))
        # derived Arrow files go to scratch, not next to the (reusable) hub download
        tokens = records.map(functools.partial(_tokenize_records, source=cfg.source, tokenizer=cfg.tokenizer),
                             batched=True,
                             num_proc=workers if workers > 1 else None,
                             remove_columns=records.column_names, desc=f"tokenize {cfg.name}",
                             cache_file_name=str(Path(scratch) / "tokens.arrow"))
        try:
            parts = tokens.train_test_split(test_size=cfg.val_fraction, seed=cfg.split_seed,
                                            shuffle=True)
        except ValueError as err:
            raise DataError(f"data.val_fraction={cfg.val_fraction} leaves a split of {cfg.name} "
                            f"empty ({len(tokens)} documents): {err}") from None
        train = TokenShard.write(entry / "train.bin", _arrow_chunks(parts["train"], "train", progress))
        val = TokenShard.write(entry / "val.bin", _arrow_chunks(parts["test"], "val", progress))
    return train, val, {"documents": len(tokens), "split": "documents"}


def _tokenize_records(batch: dict[str, list], source: str, tokenizer: str) -> dict[str, list[np.ndarray]]:
    if any(text is None for text in batch["text"]):
        raise DataError(f"data.source={source}: a record has no 'text' field")
    return {"ids": [_encode_uint16(text, tokenizer) for text in batch["text"] if text]}


def _arrow_chunks(split: datasets.Dataset, name: str, progress: bool) -> Iterator[np.ndarray]:
    with tqdm(total=len(split), desc=f"write {name}", unit="docs", disable=not progress) as bar:
        for table in split.with_format("arrow").iter(batch_size=_WRITE_BATCH_DOCS):
            yield table.column("ids").combine_chunks().flatten().to_numpy()
            bar.update(table.num_rows)


@contextmanager
def _datasets_progress(enabled: bool) -> Iterator[None]:
    import datasets  # seconds to import: only for record files and the hub

    was_enabled = datasets.is_progress_bar_enabled()
    (datasets.enable_progress_bars if enabled else datasets.disable_progress_bars)()
    try:
        yield
    finally:
        (datasets.enable_progress_bars if was_enabled else datasets.disable_progress_bars)()


def _workers(num_proc: int) -> int:
    return max(1, min(num_proc, os.cpu_count() or 1))
