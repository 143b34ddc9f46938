"""Token shards: a self-describing header followed by the uint16 token ids.

Layout (little-endian): 8 magic bytes, format version (u32), dtype code (u32),
token count (u64), then `count` uint16 ids. A file is written under a temporary
name with a zero count and renamed into place only once complete, so a killed
writer never leaves a file that validates.
"""
from __future__ import annotations

import os
import struct
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from llm_sweep.core.errors import DataError

MAGIC = b"LLMSWEEP"
FORMAT_VERSION = 1
UINT16_CODE = 1
HEADER = struct.Struct("<8sIIQ")
_RECOVER = "delete it and re-run `python -m llm_sweep.prepare`"


class TokenShard:
    """A read-only view of one split's token ids, memory-mapped from disk."""

    def __init__(self, path: Path, tokens: np.memmap):
        self.path = path
        self.tokens = tokens

    def __len__(self) -> int:
        return len(self.tokens)

    def __repr__(self) -> str:
        return f"TokenShard({str(self.path)!r}, {len(self):,} tokens)"

    @classmethod
    def open(cls, path: str | os.PathLike) -> TokenShard:
        """Map a shard after checking its header and size against each other."""
        path = Path(path)
        if not path.is_file():
            raise DataError(f"token shard {path} does not exist; run `python -m llm_sweep.prepare`")
        size = path.stat().st_size
        if size < HEADER.size:
            raise DataError(f"token shard {path} is truncated ({size} bytes, shorter than "
                            f"the {HEADER.size}-byte header); {_RECOVER}")
        with open(path, "rb") as file:
            magic, version, dtype_code, count = HEADER.unpack(file.read(HEADER.size))
        if magic != MAGIC:
            raise DataError(f"{path} is not a token shard (starts with {magic!r}, "
                            f"expected {MAGIC!r}); {_RECOVER}")
        if version != FORMAT_VERSION or dtype_code != UINT16_CODE:
            raise DataError(f"token shard {path} has format version {version}, dtype code "
                            f"{dtype_code}; this version reads {FORMAT_VERSION}, {UINT16_CODE} "
                            f"(uint16); {_RECOVER}")
        expected = HEADER.size + 2 * count
        if size != expected or count == 0:
            raise DataError(f"token shard {path} is truncated or incomplete: its header says "
                            f"{count:,} tokens ({expected:,} bytes) but the file has {size:,} "
                            f"bytes; {_RECOVER}")
        tokens = np.memmap(path, dtype=np.uint16, mode="r", offset=HEADER.size, shape=(count,))
        return cls(path, tokens)

    @classmethod
    def write(cls, path: str | os.PathLike, tokens: np.ndarray | Iterable[np.ndarray]) -> TokenShard:
        """Write ids (one array, or an iterable of 1-D chunks to stream) atomically."""
        path = Path(path)
        chunks = [tokens] if isinstance(tokens, np.ndarray) else tokens
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as file:
                file.write(HEADER.pack(MAGIC, FORMAT_VERSION, UINT16_CODE, 0))
                count = 0
                for chunk in chunks:
                    ids = _as_uint16(np.asarray(chunk).ravel(), path)
                    file.write(ids.tobytes())
                    count += ids.size
                if count == 0:
                    raise DataError(f"no tokens to write to {path}")
                file.seek(0)
                file.write(HEADER.pack(MAGIC, FORMAT_VERSION, UINT16_CODE, count))
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)
        return cls.open(path)


def _as_uint16(ids: np.ndarray, path: Path) -> np.ndarray:
    if ids.dtype == np.uint16:
        return ids
    if ids.size and not np.issubdtype(ids.dtype, np.integer):
        raise DataError(f"{path}: token ids must be integers, got {ids.dtype}")
    if ids.size and (ids.min() < 0 or ids.max() > np.iinfo(np.uint16).max):
        bad = ids.min() if ids.min() < 0 else ids.max()
        raise DataError(f"{path}: token id {bad} does not fit in uint16 (ids must be in [0, 65536))")
    return ids.astype(np.uint16)


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable, not only the file contents."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def eval_batch_count(tokens: int, micro_batch_size: int, seq_len: int,
                     max_batches: int | None = None) -> int:
    """How many batches `iter_eval_batches` yields, over all processes together, on a split
    of `tokens` tokens: its full batches of windows, or the one partial batch of a short split."""
    count = ((tokens - 1) // seq_len) // micro_batch_size or 1
    return count if max_batches is None else min(count, max_batches)
