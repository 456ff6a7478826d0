"""3D parallel training on PyTorch distributed: FSDP2, DTensor tensor parallel, pipelining, DCP.

Launched by torchrun; see docs/distributed.md.
"""

from hybridformer.distributed.dims import MESH_DIMS, ParallelDims, init_distributed
from hybridformer.distributed.parallelize import apply_fsdp, apply_tp, block_tp_plan, parallelize

__all__ = ["MESH_DIMS", "ParallelDims", "apply_fsdp", "apply_tp", "block_tp_plan", "init_distributed", "parallelize"]
