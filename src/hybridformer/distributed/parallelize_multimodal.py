"""Tensor parallelism and FSDP2 for the multimodal model, applied from the outside (as ``parallelize.py``).

The unit that is parallelised is a :class:`TrainingModule`: the model and its objective, whose own
parameters (the contrastive temperature) train, shard and checkpoint with the model's, and whose one
``forward`` covers everything a step computes (FSDP2 gathers the root's parameters once per step).

**Tensor parallel plans, keyed by module path**: every ``TransformerBlock`` of the text encoder takes
:func:`~hybridformer.distributed.parallelize.block_tp_plan`; every ``DecoderBlock`` of the joint
decoder takes :func:`decoder_block_tp_plan`: its causal self-attention and dense FFN are split like
an encoder block's (Megatron), and its cross-attention too: ``q_proj`` and each modality's ``k_proj``
/ ``v_proj`` column-wise (each rank attends with its heads over the whole context), ``o_proj``
row-wise. The CNN trunks, the embeddings, norms and heads are replicated.

**Replicated parameters are used as local tensors.** Some are read outside their module's own
forward: the decoder's LM head is ``F.linear`` on the token table (tied), the cross-attention's
``tanh(gate)`` and type embeddings are added to activations, and the temperature scales the logits.
A ``Replicate`` DTensor there would meet plain tensors. So every replicated parameter stays a
``Replicate`` DTensor for the optimizer, FSDP and DCP, and while its *host* runs (the FSDP unit that
holds it: an encoder block, a decoder block's self-attention or FFN, a CNN trunk, or the root),
the module sees ``param.to_local(grad_placements=[Replicate()])`` in its ``__dict__`` (which attribute
lookup reads before ``_parameters``). The replicated computation gives every TP rank the same full
gradient, which is what ``Replicate`` says; the learned token scorers get the all-reduce of their
partial gradients as in the text model.

**FSDP2 units**: text-encoder blocks, each decoder block's self-attention and FFN (its cross-attention
keys and values are computed outside the block's forward, once per input, so it stays with the
root), the CNN trunks, then the root. With data parallelism the trunks' BatchNorms become
:class:`~hybridformer.distributed.batchnorm.GroupBatchNorm` (statistics over the global batch).

Pipeline parallelism is not offered for this model (its encoders and decoder are not one chain).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import DTensor, Replicate
from torch.distributed.tensor.parallel import ColwiseParallel, ParallelStyle, RowwiseParallel, parallelize_module

from hybridformer.blocks import TransformerBlock
from hybridformer.distributed.batchnorm import sync_batch_norms
from hybridformer.distributed.dims import ParallelDims
from hybridformer.distributed.parallelize import (
    apply_fsdp_units, attention_tp_plan, block_tp_plan, check_divisible, check_selection, connect_selection, ffn_tp_plan,
)
from hybridformer.fusion.decoder import DecoderBlock

__all__ = [
    "TrainingModule", "data_parallel_group", "decoder_block_tp_plan", "export_training_module", "lift_scalars",
    "lower_scalars", "parallelize_multimodal", "run_training_module",
]


class TrainingModule(nn.Module):
    """``model`` and ``objective`` as one module: ``forward(batch)`` is ``objective(model, batch)``.

    State-dict keys are ``model.<path>`` and ``objective.<path>``; ``.model`` is the bare model.
    """

    def __init__(self, model: nn.Module, objective: nn.Module) -> None:
        super().__init__()
        self.model, self.objective = model, objective

    def forward(self, batch: Mapping[str, Any]) -> Any:
        return self.objective(self.model, batch)


def run_training_module(module: TrainingModule, batch: Mapping[str, Any]) -> Any:
    """The Trainer's objective for a :class:`TrainingModule`: its forward."""
    return module(batch)


def decoder_block_tp_plan(block: DecoderBlock) -> dict[str, ParallelStyle]:
    """The tensor-parallel plan of one decoder block, keyed by module path inside the block."""
    plan = {**attention_tp_plan("self_attention", block.self_attention), **ffn_tp_plan("ffn", block.ffn)}
    if block.cross_attention is not None:
        plan["cross_attention.q_proj"] = ColwiseParallel()
        for modality in block.cross_attention.k_proj:
            plan[f"cross_attention.k_proj.{modality}"] = ColwiseParallel()
            plan[f"cross_attention.v_proj.{modality}"] = ColwiseParallel()
        plan["cross_attention.o_proj"] = RowwiseParallel()
    return plan


def _units(module: TrainingModule) -> list[nn.Module]:
    """The FSDP units inside the root (see the module docstring); each also hosts local views."""
    model = module.model
    units: list[nn.Module] = [m for m in model.text_encoder.modules() if isinstance(m, TransformerBlock)]
    for block in model.decoder.blocks:
        units += [block.self_attention, block.ffn]
    units += [enc for enc in (model.image_encoder, model.video_encoder) if enc is not None]
    return units


def _local_views(host: nn.Module, owned: list[tuple[nn.Module, str, torch.Size]]) -> None:
    """While ``host`` runs, each ``(module, name, shape)`` of ``owned`` reads its parameter as a local
    tensor of ``shape`` (see the module docstring). FSDP's pre-forward hook (prepended) unshards first."""

    def enter(_module: nn.Module, _args: Any) -> None:
        for module, name, shape in owned:
            param = module._parameters[name]
            local = param.to_local(grad_placements=[Replicate()]) if isinstance(param, DTensor) else param
            module.__dict__[name] = local.view(shape)

    def leave(_module: nn.Module, _args: Any, _out: Any) -> None:
        for module, name, _ in owned:
            module.__dict__.pop(name, None)

    host.register_forward_pre_hook(enter)
    host.register_forward_hook(leave)


def lift_scalars(module: nn.Module) -> list[tuple[nn.Module, str]]:
    """Make every 0-d parameter (cross-attention gates, the temperature) a (1,) one, in place: FSDP2
    shards dim 0 and refuses scalars. :func:`parallelize_multimodal` shows the modules 0-d views of them."""
    lifted = []
    for module_ in module.modules():
        for name, param in list(module_._parameters.items()):
            if param is not None and param.dim() == 0:
                module_._parameters[name] = nn.Parameter(param.detach().reshape(1), requires_grad=param.requires_grad)
                lifted.append((module_, name))
    return lifted


def lower_scalars(lifted: list[tuple[nn.Module, str]]) -> None:
    """Undo :func:`lift_scalars` on plain (unparallelised) modules."""
    for module, name in lifted:
        param = module._parameters[name]
        module._parameters[name] = nn.Parameter(param.detach().reshape(()), requires_grad=param.requires_grad)


def _hosted(host: nn.Module, inner: set[int]) -> Iterator[tuple[nn.Module, str]]:
    """(module, parameter name) of ``host``'s parameters, not inside another host in ``inner``."""
    stack = [host]
    while stack:
        module = stack.pop()
        for name, param in module._parameters.items():
            if param is not None:
                yield module, name
        stack += [child for child in module.children() if id(child) not in inner]


def apply_tp_multimodal(module: TrainingModule, tp_mesh: DeviceMesh) -> set[tuple[int, str]]:
    """The plans of every encoder and decoder block (in place); every other parameter becomes a
    ``Replicate`` DTensor (read through local views, see :func:`parallelize_multimodal`): return
    those as (id of the module, parameter name)."""
    tp = tp_mesh.size()
    model = module.model
    encoder_blocks = [(n, b) for n, b in model.text_encoder.named_modules() if isinstance(b, TransformerBlock)]
    for name, block in encoder_blocks:
        check_divisible(f"text_encoder.{name}", block.attention.config.n_heads, block.ffn, tp)
        check_selection(f"text_encoder.{name}", block.attention.config, tp)
    for i, block in enumerate(model.decoder.blocks):
        check_divisible(f"decoder.blocks.{i}", block.config.n_heads, block.ffn, tp)
        check_selection(f"decoder.blocks.{i}", block.config.attention, tp)
    attentions = []
    for _, block in encoder_blocks:
        parallelize_module(block, tp_mesh, block_tp_plan(block))
        attentions.append(block.attention)
    for block in model.decoder.blocks:
        parallelize_module(block, tp_mesh, decoder_block_tp_plan(block))
        attentions.append(block.self_attention)
    for attention in attentions:
        connect_selection(attention, tp_mesh)
    replicated = set()
    for owner in module.modules():
        for name, param in list(owner._parameters.items()):
            if param is not None and not isinstance(param, DTensor):
                local = DTensor.from_local(param.data, tp_mesh, [Replicate()], run_check=False)
                owner._parameters[name] = nn.Parameter(local, requires_grad=param.requires_grad)
                replicated.add((id(owner), name))
    return replicated


def parallelize_multimodal(module: TrainingModule, mesh: DeviceMesh) -> TrainingModule:
    """Sync BatchNorms over data parallelism, tensor-parallelise, then shard ``module`` over ``mesh``
    (in place; every rank must have built the same weights). The objective's terms that communicate
    (``process_group``: ITC, ITM) get the data-parallel group.

    0-d parameters are lifted to (1,) (:func:`lift_scalars`) and, under TP, replicated parameters
    become ``Replicate`` DTensors; both are read through local views installed while their host (FSDP
    unit) runs. Checkpoints then hold the (1,) shapes: :func:`export_training_module` undoes them.

    Raises:
        ValueError: pipeline parallelism, or a TP degree that does not divide the heads or FFN widths.
    """
    if mesh["pp"].size() > 1:
        raise ValueError("parallel.pp: the multimodal model has no pipeline stages; use dp_shard, dp_replicate and tp")
    dp_mesh, tp_mesh = ParallelDims.dp_mesh(mesh), mesh["tp"]
    group = data_parallel_group(mesh)
    for term in module.objective.modules():  # ITC's all-gather and ITM's negatives span the dp ranks
        if hasattr(term, "process_group"):
            term.process_group = group
    if dp_mesh.size() > 1:
        sync_batch_norms(module, group)
    lifted = {(id(m), name) for m, name in lift_scalars(module)}
    viewed = lifted | (apply_tp_multimodal(module, tp_mesh) if tp_mesh.size() > 1 else set())
    hosts = [*_units(module), module]
    inner = {id(h) for h in hosts}
    for host in hosts:
        owned = [(m, name, torch.Size([]) if (id(m), name) in lifted else m._parameters[name].shape)
                 for m, name in _hosted(host, inner - {id(host)}) if (id(m), name) in viewed]
        if owned:
            _local_views(host, owned)
    if dp_mesh.size() > 1:
        apply_fsdp_units(module, _units(module), dp_mesh)
    return module


def export_training_module(path: Any, fresh: TrainingModule) -> nn.Module:
    """Load the DCP checkpoint ``path`` of a parallel run into ``fresh`` (a newly built, unparallelised
    :class:`TrainingModule` of the same config) in this process alone; return its model with the
    original parameter shapes (for ``registry.save_model``). In a distributed job, one rank calls it."""
    from hybridformer.distributed.checkpoint import load_distributed

    lifted = lift_scalars(fresh)
    load_distributed(path, fresh, alone=True)
    lower_scalars(lifted)
    return fresh.model


def _flat_group(dp_mesh: DeviceMesh) -> Any:
    """One process group over a 2-D (dp_replicate, dp_shard) mesh."""
    return dp_mesh._flatten("dp").get_group()


def data_parallel_group(mesh: DeviceMesh) -> Any:
    """The process group over which a global batch is split (1-D or flattened HSDP mesh)."""
    dp_mesh = ParallelDims.dp_mesh(mesh)
    return dp_mesh.get_group() if dp_mesh.ndim == 1 else _flat_group(dp_mesh)

