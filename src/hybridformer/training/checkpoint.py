"""Crash-safe checkpoints: model weights in safetensors, the rest in a ``weights_only``-loadable torch file.

A checkpoint is a folder ``<root>/step-00000123/`` holding ``model.safetensors`` and
``training_state.pt``. It is written under a hidden temporary name in the same parent, every file is
fsynced, and only then renamed into place (a rename within one filesystem is atomic), so a process
killed mid-save leaves the previous checkpoints untouched and never a half-written folder under a
real name. Old checkpoints are deleted only after the new one is in place.

``training_state.pt`` holds plain containers of tensors, numbers and strings only (RNG states are
converted to tensors), so ``torch.load(path, weights_only=True)`` reads it without running pickled code.
"""

from __future__ import annotations

import os
import random
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_model, save_model
from torch import nn

from hybridformer.io import atomic_write, fsync_path

__all__ = [
    "MODEL_FILE",
    "STATE_FILE",
    "save_model_weights",
    "load_model_weights",
    "rng_state",
    "set_rng_state",
    "save_checkpoint",
    "load_training_state",
    "list_checkpoints",
    "latest_checkpoint",
]

MODEL_FILE = "model.safetensors"
STATE_FILE = "training_state.pt"
_STEP_DIR = re.compile(r"^step-(\d+)$")


def save_model_weights(model: nn.Module, path: str | Path) -> Path:
    """Atomically save ``model.state_dict()`` as safetensors (tied weights stored once)."""
    return atomic_write(path, lambda tmp: save_model(model, str(tmp)))


def load_model_weights(model: nn.Module, path: str | Path, strict: bool = True) -> None:
    """Load safetensors weights saved by :func:`save_model_weights` into ``model`` (in place).

    Raises:
        ValueError: no such file, or (with ``strict``) missing/unexpected parameter names.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path: no weights file at {path}")
    device = next(iter(model.parameters()), torch.empty(0)).device
    try:
        load_model(model, str(path), strict=strict, device=str(device))
    except RuntimeError as err:
        raise ValueError(f"path: {path} does not fit this model: {err}") from None


def rng_state() -> dict[str, Any]:
    """The torch (CPU and CUDA), Python and NumPy global RNG states, as tensors and numbers."""
    version, mt, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": {"version": version, "mt": torch.tensor(mt, dtype=torch.int64), "gauss": gauss},
        "numpy": {
            "name": np_name,
            "keys": torch.from_numpy(np_keys.astype(np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the states captured by :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py["version"], tuple(int(x) for x in py["mt"].tolist()), py["gauss"]))
    nps = state["numpy"]
    np.random.set_state(
        (nps["name"], nps["keys"].numpy().astype(np.uint32), nps["pos"], nps["has_gauss"], nps["gauss"])
    )
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def list_checkpoints(root: str | Path, markers: Sequence[str] = (MODEL_FILE, STATE_FILE)) -> list[Path]:
    """Complete checkpoint folders under ``root`` (``step-N`` folders holding every file of
    ``markers``), oldest step first (temporary folders excluded)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _STEP_DIR.match(child.name)
        if match and all((child / name).is_file() for name in markers):
            found.append((int(match.group(1)), child))
    return [path for _, path in sorted(found)]


def latest_checkpoint(root: str | Path, markers: Sequence[str] = (MODEL_FILE, STATE_FILE)) -> Path | None:
    """The highest-step complete checkpoint under ``root`` (see :func:`list_checkpoints`), or None."""
    found = list_checkpoints(root, markers)
    return found[-1] if found else None


def save_checkpoint(root: str | Path, step: int, model: nn.Module, state: dict[str, Any], keep_last: int = 2) -> Path:
    """Write checkpoint ``<root>/step-<step>`` atomically, then keep only the newest ``keep_last``.

    Args:
        root: folder holding the checkpoints.
        step: optimizer steps done; names the folder.
        model: its ``state_dict`` goes to ``model.safetensors``.
        state: everything else (optimizer, scheduler, RNG, data position...); tensors, numbers,
            strings, None and containers of them only, so it loads with ``weights_only=True``.
        keep_last: checkpoints to keep (>= 1).

    Returns:
        The checkpoint folder.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:08d}"
    tmp = root / f".{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        save_model(model, str(tmp / MODEL_FILE))
        torch.save(state, tmp / STATE_FILE)
        for name in (MODEL_FILE, STATE_FILE):
            fsync_path(tmp / name)
        fsync_path(tmp)
        if final.exists():  # re-saving a step: move the old copy aside first, since rename needs a free name
            stale = root / f".{final.name}.old-{os.getpid()}"
            os.replace(final, stale)
            os.replace(tmp, final)
            shutil.rmtree(stale, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_path(root)
    for old in list_checkpoints(root)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    for leftover in root.glob(".step-*.tmp-*"):  # from saves that were killed midway
        shutil.rmtree(leftover, ignore_errors=True)
    return final


def load_training_state(checkpoint: str | Path, model: nn.Module) -> dict[str, Any]:
    """Load a checkpoint's weights into ``model`` and return its training state (``weights_only``).

    Raises:
        ValueError: ``checkpoint`` is not a complete checkpoint folder or does not fit ``model``.
    """
    checkpoint = Path(checkpoint)
    missing = [name for name in (MODEL_FILE, STATE_FILE) if not (checkpoint / name).is_file()]
    if missing:
        raise ValueError(f"checkpoint: {checkpoint} is not a complete checkpoint (missing {', '.join(missing)})")
    load_model_weights(model, checkpoint / MODEL_FILE)
    return torch.load(checkpoint / STATE_FILE, map_location="cpu", weights_only=True)
