"""Image-text contrastive learning (CLIP / ALBEF ITC): symmetric InfoNCE with a learnable temperature.

Under data parallelism each process holds a shard of the batch. :func:`gather_with_grad` all-gathers the
embeddings across the data-parallel group (``process_group``; None = the default group) with torch's
*differentiable* collective
(``torch.distributed._functional_collectives.all_gather_single_autograd``), so every process scores its own rows against the
whole global batch and the gradients flow back to the process that computed each embedding. With
gradients averaged over processes (DDP / FSDP do this), the step equals the single-process step on
the concatenated batch (tested under ``torchrun`` with two gloo processes). Without an initialised
process group (or a group of one process) nothing is gathered. Under tensor parallelism the group must be
the data-parallel one (``ParallelDims.dp_mesh(mesh).get_group()``): tensor-parallel ranks hold the
same rows, and gathering over them would count every row twice.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from hybridformer.losses._multimodal_batch import require
from hybridformer.losses.output import LossOutput

__all__ = [
    "group_rank", "gather_with_grad", "gather_rows", "contrastive_loss", "ContrastiveLossOutput",
    "ContrastiveObjective", "ContrastiveConfig",
]


def _world(group: dist.ProcessGroup | None = None) -> tuple[int, int]:
    """(rank, size) in ``group`` (None = the default group); (0, 1) when torch.distributed is not in use."""
    if dist.is_available() and dist.is_initialized():
        group = group or dist.group.WORLD
        return dist.get_rank(group), dist.get_world_size(group)
    return 0, 1


def group_rank(group: dist.ProcessGroup | None = None) -> int:
    """This process's rank in ``group`` (None = the default group; 0 without torch.distributed)."""
    return _world(group)[0]


def gather_with_grad(x: Tensor, group: dist.ProcessGroup | None = None) -> Tensor:
    """Concatenate ``x`` (B, d) of every process of ``group`` along dim 0 -> (W*B, d), differentiably
    (every process must pass the same B). With one process, ``x`` itself."""
    _, world = _world(group)
    if world == 1:
        return x
    import torch.distributed._functional_collectives as funcol

    # The autograd variant: its backward reduce-scatters the gathered rows' gradients to their owners.
    return funcol.all_gather_single_autograd(x.contiguous(), gather_dim=0, group=group or dist.group.WORLD)


def gather_rows(x: Tensor, group: dist.ProcessGroup | None = None) -> Tensor:
    """Concatenate ``x`` (B, ...) of every process of ``group`` along dim 0 -> (W*B, ...), without
    gradient (token ids, masks, images). With one process, ``x`` itself."""
    _, world = _world(group)
    if world == 1:
        return x
    send = x.detach().contiguous()
    send = send.to(torch.uint8) if send.dtype == torch.bool else send  # gloo has no bool collectives
    parts = [torch.empty_like(send) for _ in range(world)]
    dist.all_gather(parts, send, group=group)
    return torch.cat(parts).to(x.dtype)


@dataclass
class ContrastiveLossOutput:
    """Output of :func:`contrastive_loss`."""

    loss: Tensor
    """Scalar: mean of the image->text and text->image cross-entropies over this process's rows."""
    logits_per_image: Tensor
    """(B, W*B) scaled similarities of the local images to every text of the global batch."""
    global_logits: Tensor
    """(W*B, W*B) the same scaled similarities for every image of the global batch, detached (the
    hard negatives of ITM are drawn from the whole gathered batch)."""
    offset: int
    """Row of the global batch where this process's B rows start (``rank * B``)."""
    accuracy: Tensor
    """Scalar: share of local rows (both directions) whose best match is their pair (detached)."""


def contrastive_loss(image_embeddings: Tensor, text_embeddings: Tensor, temperature: Tensor,
                     teacher: tuple[Tensor, Tensor] | None = None, alpha: float = 0.0,
                     group: dist.ProcessGroup | None = None) -> ContrastiveLossOutput:
    """Symmetric InfoNCE of paired unit-norm embeddings.

    ``logits = image @ text.T / temperature``; row i's positive is column ``rank*B + i``; the loss is
    ``(CE(logits_i2t) + CE(logits_t2i)) / 2``, each direction scoring local rows against all gathered
    columns.

    Args:
        image_embeddings: (B, d) unit-norm image embeddings (this process's shard).
        text_embeddings: (B, d) unit-norm text embeddings, row i paired with image i.
        temperature: scalar > 0 (already clamped).
        teacher: momentum distillation (ALBEF): the EMA teacher's (image, text) embeddings of the same
            rows; each direction's target becomes ``alpha * softmax(teacher logits) + (1 - alpha) *
            one_hot`` (:func:`~hybridformer.losses.momentum.soft_contrastive_targets`).
        alpha: the teacher's weight (0: the plain loss).
        group: the data-parallel group the batch is split over (None = the default group).
    """
    if image_embeddings.shape != text_embeddings.shape or image_embeddings.dim() != 2:
        raise ValueError(
            f"image_embeddings/text_embeddings: expected two (B, d) tensors of one shape, got "
            f"{tuple(image_embeddings.shape)} and {tuple(text_embeddings.shape)}"
        )
    rank, _ = _world(group)
    batch = image_embeddings.shape[0]
    all_images = gather_with_grad(image_embeddings, group)  # (W*B, d)
    all_texts = gather_with_grad(text_embeddings, group)  # (W*B, d)
    up = lambda x: x.to(torch.promote_types(x.dtype, torch.float32))  # noqa: E731  (bf16 -> fp32; fp64 stays)
    logits_i2t = up(image_embeddings) @ up(all_texts).T / temperature  # (B, W*B)
    logits_t2i = up(text_embeddings) @ up(all_images).T / temperature  # (B, W*B)
    targets = torch.arange(batch, device=image_embeddings.device) + rank * batch
    target_i2t = target_t2i = targets
    if teacher is not None:
        from hybridformer.losses.momentum import soft_contrastive_targets

        with torch.no_grad():
            t_image, t_text = (up(t.detach()) for t in teacher)
            t_i2t = t_image @ gather_with_grad(t_text, group).T / temperature  # (B, W*B)
            t_t2i = t_text @ gather_with_grad(t_image, group).T / temperature  # (B, W*B)
            target_i2t = soft_contrastive_targets(t_i2t, targets, alpha)
            target_t2i = soft_contrastive_targets(t_t2i, targets, alpha)
    loss = (F.cross_entropy(logits_i2t, target_i2t) + F.cross_entropy(logits_t2i, target_t2i)) / 2
    with torch.no_grad():
        hits = (logits_i2t.argmax(1) == targets).float().mean() + (logits_t2i.argmax(1) == targets).float().mean()
        global_logits = up(all_images) @ up(all_texts).T / temperature  # (W*B, W*B)
    return ContrastiveLossOutput(loss=loss, logits_per_image=logits_i2t, global_logits=global_logits,
                                 offset=rank * batch, accuracy=hits / 2)


@dataclass
class ContrastiveConfig:
    """The temperature of :class:`ContrastiveObjective`."""

    temperature: float = 0.07
    """Initial temperature (CLIP and ALBEF start at 0.07)."""
    min_temperature: float = 0.001
    """Lower clamp of the learned temperature (ALBEF's; CLIP's logit-scale cap of 100 is 0.01)."""
    max_temperature: float = 0.5
    """Upper clamp of the learned temperature (ALBEF's)."""
    learn_temperature: bool = True
    """Train the temperature (a parameter of the objective) or keep it fixed."""

    def __post_init__(self) -> None:
        if not 0 < self.min_temperature <= self.temperature <= self.max_temperature:
            raise ValueError(
                f"temperature: need 0 < min_temperature <= temperature <= max_temperature, got "
                f"{self.min_temperature}, {self.temperature}, {self.max_temperature}"
            )


class ContrastiveObjective(nn.Module):
    """ITC on an image-text batch (``images``, ``input_ids``, ``attention_mask``).

    Owns the temperature: ``log_temperature`` is a parameter (the Trainer optimises and checkpoints
    it), clamped to ``[min_temperature, max_temperature]`` in the forward. Metrics: ``itc_loss``,
    ``itc_accuracy``, ``temperature``. ``process_group``: the data-parallel group the embeddings are
    gathered over (None = the default group; a parallel run sets its data-parallel group).
    """

    def __init__(self, config: ContrastiveConfig | None = None) -> None:
        super().__init__()
        self.config = config or ContrastiveConfig()
        self.process_group: dist.ProcessGroup | None = None
        log_t = torch.tensor(math.log(self.config.temperature))
        if self.config.learn_temperature:
            self.log_temperature = nn.Parameter(log_t)
        else:
            self.register_buffer("log_temperature", log_t)

    def temperature(self) -> Tensor:
        """The clamped temperature (a scalar with gradient to ``log_temperature`` inside the clamp)."""
        c = self.config
        return self.log_temperature.exp().clamp(c.min_temperature, c.max_temperature)

    def score(self, model: nn.Module, batch: Mapping[str, Any], teacher: Any = None) -> ContrastiveLossOutput:
        """The embeddings' :class:`ContrastiveLossOutput` (its similarities feed hard-negative mining).
        ``teacher``: a :class:`~hybridformer.losses.momentum.MomentumTeacher` for soft targets."""
        ids = require(batch, "input_ids", "ContrastiveObjective")
        images = require(batch, "images", "ContrastiveObjective")
        out = model.contrastive(ids, batch.get("attention_mask"), images)
        soft = None
        if teacher is not None:
            with torch.no_grad():
                t = teacher.model.contrastive(ids, batch.get("attention_mask"), images)
            soft = (t.image_embeddings, t.text_embeddings)
        return contrastive_loss(out.image_embeddings, out.text_embeddings, self.temperature(), soft,
                                teacher.alpha if teacher is not None else 0.0, self.process_group)

    def metrics(self, scored: ContrastiveLossOutput) -> dict[str, Tensor]:
        """The logged figures of one scored batch."""
        return {"itc_loss": scored.loss.detach(), "itc_accuracy": scored.accuracy,
                "temperature": self.temperature().detach()}

    def forward(self, model: nn.Module, batch: Mapping[str, Any], teacher: Any = None) -> LossOutput:
        scored = self.score(model, batch, teacher)
        return LossOutput(loss=scored.loss, metrics=self.metrics(scored))
