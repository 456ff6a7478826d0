"""Distributed checkpoints with ``torch.distributed.checkpoint`` (DCP): save under one mesh, load
under another.

Model and optimizer state go through ``get_state_dict`` / ``set_state_dict``, which key both by
the model's module paths (``encoder.blocks.3.attention.q_proj.weight``) whatever the wrapping:
FSDP2 shards, tensor-parallel DTensors and pipeline stages (whose module paths are the full
model's, see ``pipeline.py``) all write the same keys. DCP stores every tensor with its global shape
and each rank reads the slices its own mesh needs, so a checkpoint written with dp=2 loads with
tp=2, with pp=2, or in one process without any process group. The optimizer state is flattened
(``flatten_optimizer_state_dict``, as torchtitan does): its hyperparameters are keyed by parameter
name too, since by group index the stages of a pipeline would overwrite each other's groups.

:func:`export_pretrained` turns a DCP checkpoint into the single-file ``model.safetensors`` folder of
``save_pretrained`` that ``evaluate`` and serving load.
"""

from __future__ import annotations

import json
from pathlib import Path
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict, set_state_dict

__all__ = ["export_pretrained", "load_distributed", "save_distributed"]

_FLAT = StateDictOptions(flatten_optimizer_state_dict=True)
EXTRA_FILE = "extra.json"
"""Small JSON-able training state saved beside the shards (step, losses): written by rank 0."""


def save_distributed(
    path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None, extra: dict | None = None
) -> Path:
    """Save ``model`` (and ``optimizer``) from every rank into the DCP folder ``path``.

    Every rank of the job must call it. ``extra`` (step, losses, ...) goes to ``extra.json``.
    """
    path = Path(path)
    if optimizer is None:
        state: dict[str, Any] = {"model": get_state_dict(model, [])[0]}
    else:
        model_state, optim_state = get_state_dict(model, optimizer, options=_FLAT)
        state = {"model": model_state, "optim": optim_state}
    dcp.save(state, checkpoint_id=str(path))
    if extra is not None and (not dist.is_initialized() or dist.get_rank() == 0):
        (path / EXTRA_FILE).write_text(json.dumps(extra))
    return path


def load_distributed(
    path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None, *, alone: bool = False
) -> dict:
    """Load a :func:`save_distributed` folder into ``model`` (and ``optimizer``), resharding to the
    current mesh; return its ``extra`` dict ({} when none was saved).

    ``alone``: this process loads by itself (a plain model) even though a process group exists.

    Raises:
        FileNotFoundError: ``path`` holds no DCP checkpoint.
        ValueError: the checkpoint lacks optimizer state but an optimizer was given.
    """
    path = Path(path)
    if not (path / ".metadata").is_file():
        raise FileNotFoundError(f"checkpoint: {path} holds no distributed checkpoint (no .metadata file)")
    if optimizer is None:
        model_state = get_state_dict(model, [])[0]
        dcp.load({"model": model_state}, checkpoint_id=str(path), no_dist=alone)
        set_state_dict(model, [], model_state_dict=model_state, optim_state_dict={})
    else:
        saved = set(dcp.FileSystemReader(str(path)).read_metadata().state_dict_metadata)
        if not any(key.startswith("optim.") for key in saved):
            raise ValueError(f"checkpoint: {path} holds no optimizer state; load the model alone (optimizer=None)")
        model_state, optim_state = get_state_dict(model, optimizer, options=_FLAT)
        # Parameters that never had a gradient (unused, e.g. a pooler no loss reads) have no optimizer
        # state in the file, but get_state_dict initialises one for every parameter: those keys are
        # not read from the file and keep their initial values (the optimizer skips parameters
        # without a gradient; torch's unflattening cannot leave them stateless).
        # (Flat keys: "state.<fqn>.<name>", "param_groups.<fqn>.<name>".)
        unsaved = {key for key in optim_state if key.startswith("state.") and f"optim.{key}" not in saved}
        state = {"model": model_state, "optim": {k: v for k, v in optim_state.items() if k not in unsaved}}
        dcp.load(state, checkpoint_id=str(path), no_dist=alone)
        state["optim"].update({key: optim_state[key] for key in unsaved})
        # strict=False lets those parameters stay stateless; the model state is complete (DCP has
        # already refused a checkpoint missing any of its keys).
        set_state_dict(
            model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"],
            options=StateDictOptions(strict=False, flatten_optimizer_state_dict=True),
        )
    extra = path / EXTRA_FILE
    return json.loads(extra.read_text()) if extra.is_file() else {}


def export_pretrained(
    path: str | Path, model: nn.Module, out_dir: str | Path, save: Callable[[nn.Module, Path], Path]
) -> Path:
    """Load the DCP checkpoint ``path`` into ``model`` (a freshly built, unparallelised model of the
    same config) in this process alone and write it with ``save`` (``hybridformer.registry.save_model``:
    one safetensors file). In a distributed job, one rank calls it.
    """
    load_distributed(path, model, alone=True)
    return save(model, Path(out_dir))
