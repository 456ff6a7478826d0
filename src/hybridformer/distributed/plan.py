"""Memory per rank, communication per step and estimated step time of a parallel layout (on paper).

The model is a stack of hybridformer blocks (multi-head attention with q/k/v/o projections, a dense
two-matrix FFN, two LayerNorms) under AdamW, parallelised the way ``parallelize.py`` and
``pipeline.py`` do it. Every formula is written out in docs/distributed.md; the activation count per
token and block, ``8d + 2f`` values without TP and ``4d + (4d + 2f)/tp`` with it, is what autograd
saves in our blocks (measured with ``saved_tensors_hooks``, checked by tests/distributed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from hybridformer.config import check
from hybridformer.distributed.dims import MESH_DIMS, ParallelDims

__all__ = [
    "NAIVE", "PRESETS", "RECOMMENDED", "Hardware", "Memory", "PlanConfig", "PlanModel", "StepTime",
    "activation_values_per_token", "comm", "links", "memory", "step_time",
]

GB = 1e9


@dataclass
class PlanModel:
    """Shape of the transformer being planned."""

    d_model: int = 4096
    """Hidden size d."""
    n_layers: int = 32
    """Number of blocks L."""
    n_heads: int = 32
    """Attention heads h (tp must divide it)."""
    d_ff: int = 16384
    """FFN width f."""
    vocab_size: int = 32000
    """Rows of the (tied) embedding table V."""
    attended_keys: int = 0
    """Keys each query attends to: window + global_k for hybrid attention; 0 = the whole sequence."""

    def __post_init__(self) -> None:
        for name in ("d_model", "n_layers", "n_heads", "d_ff", "vocab_size"):
            check(getattr(self, name) >= 1, name, f"must be >= 1, got {getattr(self, name)}")
        check(self.attended_keys >= 0, "attended_keys", f"must be >= 0, got {self.attended_keys}")

    @property
    def block_params(self) -> int:
        """Parameters of one block: q/k/v/o (4d^2 + 4d), FFN (2df + f + d), 2 LayerNorms (4d)."""
        d, f = self.d_model, self.d_ff
        return 4 * d * d + 4 * d + 2 * d * f + f + d + 4 * d

    @property
    def block_params_tp(self) -> int:
        """The part of a block that tensor parallelism splits (the projection and FFN matrices)."""
        d, f = self.d_model, self.d_ff
        return 4 * d * d + 2 * d * f + 3 * d + f

    @property
    def params(self) -> int:
        """Total parameters: blocks plus the tied embedding table."""
        return self.n_layers * self.block_params + self.vocab_size * self.d_model


PRESETS = {
    "7b": PlanModel(d_model=4096, n_layers=32, n_heads=32, d_ff=16384, vocab_size=32000),
    "70b": PlanModel(d_model=8192, n_layers=88, n_heads=64, d_ff=32768, vocab_size=32000),
}
"""Planning presets: 6.6B and 71.1B parameters with our block (GELU FFN of width 4d, MHA)."""


@dataclass
class Hardware:
    """The machines, as assumed for the step-time estimate."""

    gpus_per_node: int = 8
    """GPUs joined by NVLink in one node."""
    intra_node_gbs: float = 450.0
    """NVLink bandwidth per GPU per direction, GB/s (H100 SXM: 900 GB/s bidirectional)."""
    inter_node_gbs: float = 50.0
    """Network bandwidth per GPU per direction, GB/s (one 400 Gb/s InfiniBand NIC per GPU)."""
    peak_tflops: float = 989.0
    """Dense bf16 peak per GPU, TFLOP/s (H100 SXM)."""
    mfu: float = 0.4
    """Fraction of the peak the kernels reach (model FLOPs utilisation)."""
    memory_gb: float = 80.0
    """Memory per GPU, GB."""


@dataclass
class PlanConfig:
    """One training layout to plan: the model, the batch, the mesh, the hardware."""

    model: str = "7b"
    """A preset (`7b`, `70b`) or `custom` (then `custom` below is used)."""
    custom: PlanModel = field(default_factory=PlanModel)
    """The model shape when model=custom."""
    seq_len: int = 4096
    """Tokens per sequence N."""
    global_batch: int = 512
    """Sequences per optimizer step, over all data-parallel ranks."""
    microbatches: int = 8
    """Microbatches per step of each data-parallel rank (pipeline microbatches; gradient
    accumulation when pp = 1)."""
    schedule: Literal["1f1b", "gpipe"] = "1f1b"
    """Pipeline schedule: how many microbatches' activations a stage holds (1F1B: up to pp)."""
    parallel: ParallelDims = field(default_factory=ParallelDims)
    """The degrees dp_shard, dp_replicate, tp, pp."""
    activation_checkpointing: bool = False
    """Recompute every block in the backward pass (only block inputs are kept)."""
    precision: Literal["bf16", "fp32"] = "bf16"
    """bf16: FSDP2 mixed precision (fp32 master weights, grads and Adam; bf16 compute, activations
    and all-gathers). fp32: everything in fp32 (our CPU runs)."""
    hardware: Hardware = field(default_factory=Hardware)
    """Links and compute assumed for the step time."""

    def __post_init__(self) -> None:
        check(self.model in (*PRESETS, "custom"), "model", f"must be one of {[*PRESETS, 'custom']}, got {self.model!r}")
        check(self.seq_len >= 1, "seq_len", f"must be >= 1, got {self.seq_len}")
        check(self.microbatches >= 1, "microbatches", f"must be >= 1, got {self.microbatches}")
        per_rank = self.global_batch / (self.parallel.dp * self.microbatches)
        check(
            per_rank >= 1 and per_rank == int(per_rank),
            "global_batch",
            f"must be a multiple of dp x microbatches = {self.parallel.dp * self.microbatches}, got {self.global_batch}",
        )
        shape = self.shape
        check(shape.n_heads % self.parallel.tp == 0, "parallel.tp", f"must divide n_heads={shape.n_heads}")
        check(self.parallel.pp <= shape.n_layers, "parallel.pp", f"must be <= n_layers={shape.n_layers}")

    @property
    def shape(self) -> PlanModel:
        return self.custom if self.model == "custom" else PRESETS[self.model]

    @property
    def microbatch_tokens(self) -> int:
        """Tokens of one microbatch of one data-parallel rank."""
        return self.global_batch // (self.parallel.dp * self.microbatches) * self.seq_len


@dataclass
class Memory:
    """Bytes per rank (the most loaded pipeline stage: the first, with the embeddings)."""

    params: float
    grads: float
    optimizer: float
    fsdp_buffers: float
    """Unsharded bf16 parameters and gradients of the blocks being gathered (about two at a time)."""
    activations: float
    """Saved for the backward pass at the peak: the microbatches in flight on this stage."""

    @property
    def total(self) -> float:
        return self.params + self.grads + self.optimizer + self.fsdp_buffers + self.activations


def _stage_params(cfg: PlanConfig) -> tuple[float, float]:
    """(parameters this rank holds before FSDP sharding, of which in one block), first stage."""
    m, par = cfg.shape, cfg.parallel
    block = m.block_params_tp / par.tp + (m.block_params - m.block_params_tp)
    blocks = math.ceil(m.n_layers / par.pp)
    return blocks * block + m.vocab_size * m.d_model, block


def activation_values_per_token(m: PlanModel, tp: int) -> float:
    """Values autograd keeps per token and block: the block input, q/k/v, attention output, the two
    LayerNorm inputs, the FFN input, the GELU input and output (TP splits q/k/v/output and the FFN)."""
    return 4 * m.d_model + (4 * m.d_model + 2 * m.d_ff) / tp


def memory(cfg: PlanConfig) -> Memory:
    """Memory per rank of ``cfg``."""
    m, par = cfg.shape, cfg.parallel
    unsharded, block = _stage_params(cfg)
    local = unsharded / par.dp_shard
    act_bytes = 2 if cfg.precision == "bf16" else 4
    blocks = math.ceil(m.n_layers / par.pp)
    in_flight = 1 if par.pp == 1 else (min(cfg.microbatches, par.pp) if cfg.schedule == "1f1b" else cfg.microbatches)
    tokens = cfg.microbatch_tokens
    per_block = activation_values_per_token(m, par.tp) * tokens * act_bytes
    if cfg.activation_checkpointing:  # block inputs only, plus one block recomputed at a time
        acts = in_flight * blocks * m.d_model * tokens * act_bytes + per_block
    else:
        acts = in_flight * blocks * per_block
    buffers = 2 * block * (2 + 2) if cfg.precision == "bf16" and par.dp_shard > 1 else 0.0
    return Memory(params=4 * local, grads=4 * local, optimizer=8 * local, fsdp_buffers=buffers, activations=acts)


def comm(cfg: PlanConfig) -> dict[str, float]:
    """Bytes each rank sends per optimizer step, per mesh dimension (ring collectives)."""
    m, par = cfg.shape, cfg.parallel
    unsharded, _ = _stage_params(cfg)
    wire = 2 if cfg.precision == "bf16" else 4  # all-gathered params and activations
    tokens = cfg.microbatch_tokens * cfg.microbatches  # this rank's tokens per step
    blocks = math.ceil(m.n_layers / par.pp)
    n, r, t = par.dp_shard, par.dp_replicate, par.tp
    # FSDP: all-gather in forward and again in backward (once per step under PP, which keeps them
    # gathered across microbatches), reduce-scatter of fp32 gradients once per step.
    gathers = 1 if par.pp > 1 else 2 * cfg.microbatches
    dp_shard = (gathers * wire + 4) * unsharded * (n - 1) / n
    dp_replicate = 2 * 4 * (unsharded / n) * (r - 1) / r  # all-reduce of the gradient shards
    # TP: 2 all-reduces in forward (attention out, FFN out), 2 in backward, 2 more when recomputed.
    reduces = 6 if cfg.activation_checkpointing else 4
    tp = reduces * 2 * (t - 1) / t * tokens * m.d_model * wire * blocks
    pp = 2 * tokens * m.d_model * wire if par.pp > 1 else 0.0  # activations forward, gradients back
    return {"dp_shard": dp_shard, "dp_replicate": dp_replicate, "tp": tp, "pp": pp}


def links(par: ParallelDims, order: tuple[str, ...], gpus_per_node: int) -> dict[str, str]:
    """Which link each dimension's groups cross when ranks are numbered with ``order[0]`` innermost
    (fastest-varying): ``nvlink`` when a group fits in a node, ``network`` otherwise."""
    result, stride = {}, 1
    for dim in order:
        size = getattr(par, dim)
        result[dim] = "nvlink" if size == 1 or stride * size <= gpus_per_node else "network"
        stride *= size
    return result


RECOMMENDED = tuple(reversed(MESH_DIMS))
"""Innermost first: tp inside a node, then dp_shard, dp_replicate, pp outermost (our mesh order)."""
NAIVE = MESH_DIMS
"""The same degrees numbered the other way round: tp outermost, its groups spread over nodes."""


@dataclass
class StepTime:
    """Estimated seconds of one optimizer step."""

    compute: float
    bubble: float
    tp: float
    pp: float
    dp: float
    """Data-parallel communication left after overlapping it with compute (FSDP prefetches)."""
    links: dict[str, str]

    @property
    def total(self) -> float:
        return self.compute + self.bubble + self.tp + self.pp + self.dp


def step_time(cfg: PlanConfig, order: tuple[str, ...] = RECOMMENDED) -> StepTime:
    """Compute + pipeline bubble + exposed communication, with ranks numbered by ``order``."""
    m, par, hw = cfg.shape, cfg.parallel, cfg.hardware
    keys = m.attended_keys or cfg.seq_len
    tokens = cfg.global_batch * cfg.seq_len
    flops = 6 * (m.params - m.vocab_size * m.d_model) * tokens + 12 * m.n_layers * m.d_model * keys * tokens
    if cfg.activation_checkpointing:
        flops *= 4 / 3  # the forward runs twice
    compute = flops / par.world_size / (hw.peak_tflops * 1e12 * hw.mfu)
    bubble = compute * (par.pp - 1) / cfg.microbatches
    placed = links(par, order, hw.gpus_per_node)
    bw = {"nvlink": hw.intra_node_gbs * GB, "network": hw.inter_node_gbs * GB}
    volume = comm(cfg)
    time = {dim: volume[dim] / bw[placed[dim]] for dim in volume}
    exposed_dp = max(0.0, time["dp_shard"] + time["dp_replicate"] - compute)
    return StepTime(compute, bubble, time["tp"], time["pp"], exposed_dp, placed)
