"""Checkpoints: atomic writes, safe (weights_only) loads, resume, and `load_model`.

A checkpoint is a plain dict of tensors and primitives (`model`, `optimizer`, `spent`,
`rng`, `config`, `final`), so `torch.load(weights_only=True)` reads it without
unpickling arbitrary objects. Model keys never carry torch.compile's `_orig_mod.` prefix.
"""
from __future__ import annotations

import os
import random
from functools import partial
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from llm_sweep.core import console
from llm_sweep.core.disk import writing
from llm_sweep.core.errors import DataError
from llm_sweep.core.run_record import CHECKPOINT_DIR
from llm_sweep.models.build import build_model

KEEP_LAST = 2
COMPILE_PREFIX = "_orig_mod."  # torch.compile's wrapper prepends it to every key


def save_checkpoint(run_dir: Path, step: int, payload: dict[str, Any]) -> Path:
    """Write `checkpoints/step_XXXXXXX.pt` atomically and keep the newest KEEP_LAST.

    The older ones are deleted only once the new one is in place. A full disk is DiskFull,
    the temporary file removed, the older checkpoints untouched.
    """
    folder = Path(run_dir) / CHECKPOINT_DIR
    path = folder / f"step_{step:07d}.pt"
    tmp = path.with_suffix(f".pt.tmp{os.getpid()}")
    with writing(path, tensor_bytes(payload), undo=partial(tmp.unlink, missing_ok=True)):
        folder.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    for old in list_checkpoints(run_dir)[:-KEEP_LAST]:
        old.unlink(missing_ok=True)
    return path


def tensor_bytes(payload: Any) -> int:
    """The bytes torch.save writes for the tensors in `payload` (nested dicts, lists, tuples):
    each storage once, as it saves them (tied weights share one). The checkpoint file's size
    to within torch.save's small overhead, for a full disk's error message."""
    storages: dict[int, int] = {}
    pending = [payload]
    while pending:
        item = pending.pop()
        if isinstance(item, torch.Tensor):
            storage = item.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
        elif isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, (list, tuple)):
            pending.extend(item)
    return sum(storages.values())


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoints of a run directory, oldest first."""
    return sorted((Path(run_dir) / CHECKPOINT_DIR).glob("step_*.pt"))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A training checkpoint's contents; a truncated, foreign or incomplete file is a DataError naming it."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for damaged files
        raise DataError(f"checkpoint {path} cannot be read ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else 'no detail'})") from None
    if not isinstance(checkpoint, dict) or not {"model", "config"} <= checkpoint.keys():
        raise DataError(f"{path} is not a training checkpoint (needs 'model' and 'config')")
    return checkpoint


def latest_valid_checkpoint(run_dir: Path) -> Optional[tuple[Path, dict[str, Any]]]:
    """The newest checkpoint of the run directory that loads, None when it has none.

    A damaged newer one is skipped with one warning line naming it; when every
    checkpoint is damaged, a DataError says so (training from scratch would silently
    throw their progress away).
    """
    found = list_checkpoints(run_dir)
    for path in reversed(found):
        try:
            return path, load_checkpoint(path)
        except DataError as exc:
            console.warn(f"skipping unreadable checkpoint: {exc}")
    if found:
        raise DataError(f"no checkpoint in {Path(run_dir) / CHECKPOINT_DIR} can be read "
                        f"({', '.join(p.name for p in found)}); remove them to start over "
                        "(resume=never) or resume from a copy (resume=<path>)")
    return None


def resolve_checkpoint(path: Path) -> Path:
    """A checkpoint file, or the newest checkpoint of a run directory."""
    path = Path(path)
    if path.is_dir():
        found = list_checkpoints(path)
        if not found:
            raise DataError(f"{path} holds no checkpoints (expected {CHECKPOINT_DIR}/step_*.pt)")
        return found[-1]
    if not path.exists():
        raise DataError(f"checkpoint {path} does not exist")
    return path


def model_state(checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The checkpoint's model weights with any torch.compile prefix removed."""
    return {key.replace(COMPILE_PREFIX, ""): value for key, value in checkpoint["model"].items()}


def load_model(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """An eval-mode model from a checkpoint file or a run directory (its newest checkpoint)."""
    checkpoint = load_checkpoint(resolve_checkpoint(Path(path)))
    model = build_model(checkpoint["config"]["model"])
    model.load_state_dict(model_state(checkpoint))
    return model.to(device).eval()


def rng_state() -> dict[str, Any]:
    """Every random state a resumed run needs to continue exactly."""
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
