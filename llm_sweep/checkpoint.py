"""Checkpoints: atomic writes, safe (weights_only) loads, and `load_model` for notebooks.

A checkpoint is a plain dict of tensors and primitives, so `torch.load(weights_only=True)`
reads it without unpickling arbitrary objects. Model keys never carry torch.compile's
`_orig_mod.` prefix.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from llm_sweep.errors import DataError

CHECKPOINT_DIR = "checkpoints"
KEEP_LAST = 2


def unwrap(model: nn.Module) -> nn.Module:
    """The module under a torch.compile wrapper (its state_dict has clean keys)."""
    return getattr(model, "_orig_mod", model)


def save_checkpoint(run_dir: Path, step: int, payload: dict[str, Any]) -> Path:
    """Write `checkpoints/step_XXXXXXX.pt` atomically and keep the newest KEEP_LAST."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step_{step:07d}.pt"
    tmp = path.with_suffix(f".pt.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        torch.save(payload, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    for old in list_checkpoints(run_dir)[:-KEEP_LAST]:
        old.unlink(missing_ok=True)
    return path


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoints of a run directory, oldest first."""
    return sorted((Path(run_dir) / CHECKPOINT_DIR).glob("step_*.pt"))


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: say which one
        raise DataError(f"checkpoint {path} cannot be read ({type(exc).__name__}: {exc})") from exc


def latest_valid_checkpoint(run_dir: Path) -> Optional[tuple[Path, dict[str, Any]]]:
    """The newest checkpoint in the run directory that loads, warning about any that don't."""
    for path in reversed(list_checkpoints(run_dir)):
        try:
            return path, load_checkpoint(path)
        except DataError as exc:
            warnings.warn(f"skipping unreadable checkpoint: {exc}", stacklevel=2)
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


def load_model(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """An eval-mode model from a checkpoint file or a run directory."""
    from llm_sweep.models import build_model

    state = load_checkpoint(resolve_checkpoint(Path(path)))
    model = build_model(state["config"]["model"])
    model.load_state_dict(state["model"])
    return model.to(device).eval()
