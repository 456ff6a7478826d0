"""`ParallelDims`: the degrees of data, tensor and pipeline parallelism, and the DeviceMesh they span.

The mesh's dimensions are named, outermost first, ``pp``, ``dp_replicate``, ``dp_shard``, ``tp``
(torchtitan's order): consecutive ranks share a tensor-parallel group, so with ``tp`` at most the
GPUs of one node, every TP group lies inside an NVLink node, and pipeline stages are the farthest
apart. Dimensions of degree 1 are kept in the mesh, so ``mesh["tp"]`` always exists.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh

from hybridformer.config import check

__all__ = ["MESH_DIMS", "ParallelDims", "init_distributed"]

MESH_DIMS = ("pp", "dp_replicate", "dp_shard", "tp")
"""Names of the mesh dimensions, outermost (slowest-varying rank) first."""


@dataclass(frozen=True)
class ParallelDims:
    """How many ways the model and the batch are split; the product must equal the world size."""

    dp_shard: int = 1
    """Data-parallel degree with sharded parameters, gradients and optimizer state (FSDP2)."""
    dp_replicate: int = 1
    """Data-parallel degree with replicated parameters (DDP-style); with dp_shard > 1 it is HSDP:
    shard inside a group of dp_shard ranks, replicate across the groups."""
    tp: int = 1
    """Tensor-parallel degree: attention heads and FFN neurons split across this many ranks."""
    pp: int = 1
    """Pipeline-parallel degree: the blocks split into this many consecutive stages."""

    def __post_init__(self) -> None:
        for name in ("dp_shard", "dp_replicate", "tp", "pp"):
            value = getattr(self, name)
            check(isinstance(value, int) and value >= 1, f"parallel.{name}", f"must be an integer >= 1, got {value!r}")

    @property
    def world_size(self) -> int:
        """Number of processes these degrees need."""
        return self.dp_shard * self.dp_replicate * self.tp * self.pp

    @property
    def dp(self) -> int:
        """Total data-parallel degree: the number of different batch shards per step."""
        return self.dp_shard * self.dp_replicate

    def validate(self, world_size: int) -> None:
        """Raise a ValueError naming the degrees when they do not multiply to ``world_size``."""
        if self.world_size != world_size:
            raise ValueError(
                f"parallel: dp_replicate={self.dp_replicate} x dp_shard={self.dp_shard} x tp={self.tp} x "
                f"pp={self.pp} = {self.world_size} processes, but the world size is {world_size} "
                f"(torchrun --nproc_per_node x --nnodes); make the product equal the world size"
            )

    def build_mesh(self, device_type: str | None = None) -> DeviceMesh:
        """The 4-D DeviceMesh ``(pp, dp_replicate, dp_shard, tp)`` over the initialised process group.

        Args:
            device_type: ``"cpu"`` (gloo) or ``"cuda"`` (nccl); None = cuda when available.
        """
        if not dist.is_initialized():
            raise ValueError("parallel: the process group is not initialised; call init_distributed() first")
        self.validate(dist.get_world_size())
        device_type = device_type or ("cuda" if torch.cuda.is_available() else "cpu")
        shape = (self.pp, self.dp_replicate, self.dp_shard, self.tp)
        return init_device_mesh(device_type, shape, mesh_dim_names=MESH_DIMS)

    @staticmethod
    def dp_mesh(mesh: DeviceMesh) -> DeviceMesh:
        """The data-parallel sub-mesh FSDP2 shards over: 1-D ``dp_shard``, or 2-D
        ``(dp_replicate, dp_shard)`` for HSDP."""
        if mesh["dp_replicate"].size() > 1:
            return mesh["dp_replicate", "dp_shard"]
        return mesh["dp_shard"]

    @staticmethod
    def dp_rank(mesh: DeviceMesh) -> int:
        """This rank's index among the data-parallel shards of the batch."""
        return mesh["dp_replicate"].get_local_rank() * mesh["dp_shard"].size() + mesh["dp_shard"].get_local_rank()


def init_distributed(timeout_s: float = 300.0) -> torch.device:
    """Initialise the default process group from torchrun's environment; return this rank's device.

    nccl with one GPU per local rank when CUDA is available, gloo on CPU otherwise. ``timeout_s``
    bounds every collective, so a rank that dies makes the others fail instead of hanging.
    """
    from datetime import timedelta

    if "RANK" not in os.environ:
        raise ValueError("parallel: RANK is not set; launch with torchrun (python -m torch.distributed.run)")
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    return device
