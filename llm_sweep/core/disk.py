"""Writes that can meet a full disk: one DiskFull error naming the file, the bytes it needed
and the space left, and no half-written file left behind.

Every writer of a run's files (checkpoints, status and summary JSON, metrics.jsonl) runs its
write inside `writing`; MLflow artifact logging turns a full store into `disk_full` too.
"""
from __future__ import annotations

import errno
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional

from llm_sweep.core.errors import DiskFull

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)  # no space left on device, disk quota exceeded


def no_space(exc: BaseException) -> Optional[OSError]:
    """The no-space (or over-quota) OSError behind `exc`, itself or one it was raised from or
    while handling, else None: torch.save reports a failed write as a RuntimeError raised
    while the OSError was handled."""
    seen: set[int] = set()
    found: Optional[BaseException] = exc
    while found is not None and id(found) not in seen:
        if isinstance(found, OSError) and found.errno in NO_SPACE:
            return found
        seen.add(id(found))
        found = found.__cause__ or found.__context__
    return None


def format_bytes(count: int) -> str:
    """`count` bytes for a reader: 850 B, 12.3 kB, 1.1 MB, 4.0 GB."""
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} B"


def mount_point(path: Path) -> Path:
    """The mount point of the file system holding `path`, or its nearest existing parent."""
    path = Path(os.path.abspath(path))
    while not path.exists():
        path = path.parent
    while not os.path.ismount(path):
        path = path.parent
    return path


def disk_full(path: Path | str, needed: int, cause: Optional[OSError] = None) -> DiskFull:
    """The one-line error for a write of `needed` bytes to local file `path` that found no
    space (or, `cause` says, went over a quota: then the disk's free space is beside the point)."""
    if cause is not None and cause.errno == errno.EDQUOT:
        return DiskFull(f"disk quota exceeded writing {path}: needs {format_bytes(needed)}")
    mount = mount_point(Path(path))
    return DiskFull(f"no space left on device writing {path}: needs {format_bytes(needed)}, "
                    f"{format_bytes(shutil.disk_usage(mount).free)} free on {mount}")


@contextmanager
def writing(path: Path, needed: int, undo: Callable[[], object] = lambda: None) -> Iterator[None]:
    """Run a write of about `needed` bytes to `path`. On any failure call `undo` first (remove
    the temporary file, cut a half-written line off), so nothing half-written stays and the
    space is free again; then a full disk or quota is raised as DiskFull, anything else as it
    was. The free space is measured after `undo`, so the message tells what is really left."""
    try:
        yield
    except BaseException as exc:
        undo()
        cause = no_space(exc)
        if cause is None:
            raise
        raise disk_full(path, needed, cause) from exc
