"""Tensor parallelism and FSDP2 for hybridformer models, applied from the outside (torchtitan's recipe).

The model code knows nothing of parallelism: this file holds the tensor-parallel plan of a
:class:`~hybridformer.blocks.TransformerBlock`, keyed by module path inside the block, and applies
it with ``parallelize_module`` to every block it finds (``encoder.blocks.<i>`` of a classifier or
masked LM, ``blocks.<i>`` of a bare encoder or a pipeline stage), then ``fully_shard`` per block and
on the root.

What is split, and what stays replicated on every TP rank (and why it stays correct):

- ``attention.q_proj/k_proj/v_proj``: column-wise (each rank computes its shard of the heads);
  ``attention.o_proj``: row-wise (partial sums all-reduced into the replicated hidden state).
  ``attention.gate_proj`` (``combine="gated"``): column-wise, its 2 gates per head follow the heads.
- The pooled selection (``selection="pooled"``, the default): ``attention.pooled.pool_proj`` and
  ``attention.pooled.gate_proj`` give one pooling logit and one gate per head, so they are split
  column-wise with the heads, and each rank computes its heads' pooled queries and branch. The keys
  are ranked by the branch probabilities summed over *all* heads: each rank's partial sum is
  all-reduced over the TP group before the top-k (``PooledSelection.head_sum``), so every rank picks
  the same sets as one process holding every head (up to the order of the float sum).
- The learned token scorer reads the replicated full hidden state with replicated weights, so its
  scores, hence the top-k selection, are bitwise the same on every TP rank. Its gradient is not:
  the scores enter the logits of this rank's heads only (the straight-through bias), so each rank
  holds a partial sum over heads. A DTensor round trip on the scorer's output
  (``from_local(Replicate)`` then ``to_local(grad_placements=Partial)``) all-reduces that gradient
  in the backward pass, through DTensor's own redistribution.
- Dense FFN: ``ffn.fc_in`` column-wise, ``ffn.fc_out`` row-wise. A *gated* FFN stays replicated:
  its groups are contiguous neuron blocks that ``masked_ffn`` unflattens from the full ``d_ff``, and
  its gate's target-rate loss reads all groups, so sharding it would need model changes; replicated,
  the gate sees the full hidden state and every rank computes the same gates and gradients. TP then
  saves no FFN memory for gated models (FSDP still shards it over the data-parallel ranks).
- LayerNorms, embeddings and heads stay replicated (no sequence parallelism yet: see
  docs/distributed.md). Every module left with plain parameters is made :class:`Replicated`:
  its parameters become ``Replicate`` DTensors, so all parameters are DTensors (a fused or
  foreach optimizer refuses a mix of DTensors and tensors).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor, Partial, Replicate, distribute_module
from torch.distributed.tensor.parallel import (
    ColwiseParallel,
    ParallelStyle,
    RowwiseParallel,
    parallelize_module,
)

from hybridformer.attention import AttentionConfig
from hybridformer.blocks import TransformerBlock
from hybridformer.distributed.dims import ParallelDims

__all__ = [
    "Replicated", "apply_ac", "apply_fsdp", "apply_fsdp_units", "apply_tp", "attention_tp_plan", "block_tp_plan",
    "check_divisible", "check_selection", "connect_selection", "ffn_tp_plan", "find_blocks", "materialize", "parallelize",
    "sum_grad_over", "sum_over",
]


class Replicated(ParallelStyle):
    """A leaf module computed whole on every TP rank: its parameters become ``Replicate`` DTensors
    (so an optimizer sees DTensors only), its tensor inputs are wrapped as replicated DTensors and
    its tensor output unwrapped to a local tensor (torchtitan's ``NoParallel``). For leaves only
    (Linear, LayerNorm, Embedding): their forward is one op on the wrapped inputs.
    """

    def _apply(self, module: nn.Module, device_mesh: DeviceMesh) -> nn.Module:
        def wrap(t: Any) -> Any:
            if not isinstance(t, Tensor) or isinstance(t, DTensor):
                return t
            return DTensor.from_local(t, device_mesh, [Replicate()], run_check=False)

        distribute_module(module, device_mesh)
        module.register_forward_pre_hook(lambda m, args: tuple(wrap(a) for a in args))
        module.register_forward_hook(lambda m, args, out: out.to_local() if isinstance(out, DTensor) else out)
        return module


def attention_tp_plan(prefix: str, attention: nn.Module) -> dict[str, ParallelStyle]:
    """The plan of a :class:`~hybridformer.attention.HybridAttention` at module path ``prefix``:
    q/k/v (and the gated combine's gate) column-wise, the output row-wise."""
    plan: dict[str, ParallelStyle] = {f"{prefix}.{n}_proj": ColwiseParallel() for n in ("q", "k", "v")}
    plan[f"{prefix}.o_proj"] = RowwiseParallel()
    if hasattr(attention, "gate_proj"):
        plan[f"{prefix}.gate_proj"] = ColwiseParallel()
    if hasattr(attention, "pooled"):  # one pooling logit and one branch gate per head
        plan[f"{prefix}.pooled.pool_proj"] = ColwiseParallel()
        plan[f"{prefix}.pooled.gate_proj"] = ColwiseParallel()
    return plan


def ffn_tp_plan(prefix: str, ffn: nn.Module) -> dict[str, ParallelStyle]:
    """The plan of a dense FFN at ``prefix`` (Megatron's MLP split); a gated FFN stays replicated."""
    if ffn.gate is not None:
        return {}
    return {f"{prefix}.fc_in": ColwiseParallel(), f"{prefix}.fc_out": RowwiseParallel()}


def block_tp_plan(block: TransformerBlock) -> dict[str, ParallelStyle]:
    """The tensor-parallel plan of one block, keyed by module path inside the block (the modules it
    leaves out are replicated, see :func:`apply_tp`)."""
    return {**attention_tp_plan("attention", block.attention), **ffn_tp_plan("ffn", block.ffn)}


def _replicated_leaves(model: nn.Module) -> dict[str, ParallelStyle]:
    """``Replicated`` for every module whose own parameters the TP plans left plain tensors."""
    return {
        name: Replicated()
        for name, module in model.named_modules()
        if any(not isinstance(p, DTensor) for p in module.parameters(recurse=False))
    }


def find_blocks(model: nn.Module) -> Iterator[tuple[str, TransformerBlock]]:
    """(module path, block) of every transformer block of ``model``, in order."""
    for name, module in model.named_modules():
        if isinstance(module, TransformerBlock):
            yield name, module


def sum_grad_over(tp_mesh: DeviceMesh):
    """Forward hook: the output unchanged, its gradient all-reduced over ``tp_mesh`` (see module doc)."""

    def hook(module: nn.Module, inputs: tuple, output: Tensor) -> Tensor:
        replicated = DTensor.from_local(output, tp_mesh, [Replicate()], run_check=False)
        return replicated.to_local(grad_placements=[Partial()])

    return hook


def sum_over(tp_mesh: DeviceMesh) -> Callable[[Tensor], Tensor]:
    """A :attr:`PooledSelection.head_sum`: the all-reduced sum of a (no-gradient) tensor over ``tp_mesh``."""
    group = tp_mesh.get_group()

    def head_sum(partial: Tensor) -> Tensor:
        dist.all_reduce(partial, group=group)
        return partial

    return head_sum


def connect_selection(attention: nn.Module, tp_mesh: DeviceMesh) -> None:
    """After the plan: the scorer's gradient summed over the TP ranks (:func:`sum_grad_over`), or the
    pooled selection's importance summed over them (:func:`sum_over`)."""
    scorer = getattr(attention, "scorer", None)
    if scorer is not None:
        scorer.register_forward_hook(sum_grad_over(tp_mesh))
    pooled = getattr(attention, "pooled", None)
    if pooled is not None:
        pooled.head_sum = sum_over(tp_mesh)


def check_divisible(name: str, n_heads: int, ffn: nn.Module, tp: int) -> None:
    """Raise a ValueError naming the block when ``tp`` does not divide its heads or dense FFN width."""
    if n_heads % tp:
        raise ValueError(f"parallel.tp: must divide the attention heads ({name}: n_heads={n_heads}), got tp={tp}")
    if ffn.gate is None and ffn.d_ff % tp:
        raise ValueError(f"parallel.tp: must divide the FFN width ({name}: d_ff={ffn.d_ff}), got tp={tp}")


def check_selection(name: str, config: AttentionConfig, tp: int) -> None:
    """Raise a ValueError naming the block when its global selection cannot be split by heads: the
    compressed selection ranks blocks by probabilities summed over *all* heads, so ranks holding
    different heads would pick different sets (and its per-head projections are not in the plan)."""
    if tp > 1 and config.kind == "hybrid" and config.selection == "compressed":
        raise ValueError(f"parallel.tp: {name} uses selection={config.selection!r}, which ranks blocks over all heads "
                         f"and is not split by heads yet; use parallel.tp 1 (data and pipeline parallelism work) or "
                         f"selection='pooled' (the default) or 'scorer', got tp={tp}")


def apply_tp(model: nn.Module, tp_mesh: DeviceMesh) -> None:
    """Apply :func:`block_tp_plan` to every block of ``model`` (in place) over the 1-D ``tp_mesh``."""
    tp = tp_mesh.size()
    blocks = list(find_blocks(model))
    if not blocks:
        raise ValueError(f"parallel.tp: {type(model).__name__} has no TransformerBlock to split")
    for name, block in blocks:
        check_divisible(name, block.attention.config.n_heads, block.ffn, tp)
        check_selection(name, block.attention.config, tp)
    for _, block in blocks:
        parallelize_module(block, tp_mesh, block_tp_plan(block))
        connect_selection(block.attention, tp_mesh)
    # Norms, scorer, gated FFNs, embeddings, heads: replicated DTensors, so every parameter is one.
    parallelize_module(model, tp_mesh, _replicated_leaves(model))


def apply_ac(model: nn.Module) -> None:
    """Activation checkpointing of every block (in place): each block keeps only its inputs and runs
    its forward again in the backward pass (``checkpoint_wrapper``, non-reentrant, RNG preserved, so
    dropout and Gumbel samples repeat). Module paths gain ``_checkpoint_wrapped_module``, which
    ``get_state_dict`` and ``state_dict`` strip: checkpoints keep the keys of an unwrapped model."""
    for name, block in list(find_blocks(model)):
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, checkpoint_wrapper(block, preserve_rng_state=True))


def apply_fsdp(model: nn.Module, dp_mesh: DeviceMesh, *, reshard_after_forward: bool = True) -> None:
    """``fully_shard`` every block, then the root (embeddings, heads and whatever is left).

    ``dp_mesh`` is 1-D (FSDP) or 2-D ``(dp_replicate, dp_shard)`` (HSDP: shard inside, replicate
    across). On CUDA, parameters compute in bf16 and gradients reduce in fp32; on CPU everything
    stays fp32 (gloo has no bf16 reduction worth having, and the CPU tests compare against fp32).
    """
    apply_fsdp_units(model, [block for _, block in find_blocks(model)], dp_mesh, reshard_after_forward=reshard_after_forward)


def apply_fsdp_units(
    model: nn.Module, units: list[nn.Module], dp_mesh: DeviceMesh, *, reshard_after_forward: bool = True
) -> None:
    """``fully_shard`` each of ``units`` (submodules of ``model``), then ``model`` itself, as
    :func:`apply_fsdp` does for blocks."""
    kwargs: dict[str, Any] = {"mesh": dp_mesh, "reshard_after_forward": reshard_after_forward}
    if dp_mesh.device_type == "cuda":
        kwargs["mp_policy"] = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    for unit in units:
        fully_shard(unit, **kwargs)
    fully_shard(model, **kwargs)


def materialize(model: nn.Module, device: torch.device | str, seed: int) -> nn.Module:
    """Allocate a model built on the meta device (and parallelised) on ``device``, then
    ``torch.manual_seed(seed); model.init_weights()``.

    Sharded parameters are DTensors whose random init goes through DTensor's RNG tracker, which
    gives each shard its own part of one random stream; it exists on CUDA only. On CPU every shard
    would draw the same values (duplicate heads and neurons), so a model with sharded parameters is
    refused there: build it eagerly and parallelise it (what the tests and ``hybridformer train`` do).

    Raises:
        ValueError: sharded parameters on a device without DTensor's RNG tracker, or no init_weights.
    """
    if not callable(getattr(model, "init_weights", None)):
        raise ValueError(f"model: {type(model).__name__} has no init_weights() to materialise it with")
    sharded = [
        p for p in model.parameters() if isinstance(p, DTensor) and not all(pl.is_replicate() for pl in p.placements)
    ]
    if sharded and torch.device(device).type != "cuda":
        raise ValueError(
            f"materialize: {len(sharded)} sharded parameters on {device}: their random init needs DTensor's RNG "
            "tracker (CUDA only); on CPU build the model eagerly under the seed, then parallelize it"
        )
    model.to_empty(device=device)
    torch.manual_seed(seed)
    model.init_weights()
    return model


def parallelize(
    model: nn.Module, mesh: DeviceMesh, *, pipelined: bool = False, activation_checkpointing: bool = False
) -> nn.Module:
    """Tensor-parallelise, checkpoint activations if asked, then shard ``model`` (a whole model or one
    pipeline stage) over ``mesh`` (torchtitan's order: TP, AC, FSDP).

    Args:
        model: built on the meta device or eagerly (identical weights on every rank).
        mesh: the mesh of :meth:`ParallelDims.build_mesh`.
        pipelined: the model is a pipeline stage; its parameters then stay unsharded between the
            forward and the backward of the microbatches (the schedule runs several of each).
        activation_checkpointing: recompute every block in the backward pass (:func:`apply_ac`).

    Returns:
        The same module, parallelised in place.
    """
    if mesh["tp"].size() > 1:
        apply_tp(model, mesh["tp"])
    if activation_checkpointing:
        apply_ac(model)
    dp_mesh = ParallelDims.dp_mesh(mesh)
    if dp_mesh.size() > 1:
        apply_fsdp(model, dp_mesh, reshard_after_forward=not pipelined)
    return model
