"""Pipeline parallelism of a text classifier with ``torch.distributed.pipelining`` (GPipe, 1F1B).

The blocks are split into ``pp`` consecutive stages (manual ``PipelineStage`` split, as torchtitan
does for its decoders): stage 0 also holds the embeddings, the last stage the final LayerNorm and
the head. A stage keeps the full model's module paths (``encoder.blocks.3...``: the blocks sit in a
``ModuleDict`` keyed by their index), so its state dict is a slice of the full model's and a
distributed checkpoint written under one pipeline split loads under any other.

Between stages travel three tensors per microbatch: the hidden states (B, N, d), the padding mask
as float (B, N) (pipelining sends tensors, the next stage needs the mask) and the running sum of the
FFN gates' auxiliary losses, one value per example (B,), so the last stage adds every stage's term.
The loss of a microbatch is its mean cross-entropy plus its aux loss: ``scale_grads=True`` (the
schedules' default) divides the summed gradients by the number of microbatches, which gives the
gradient of the mean over microbatches, the same as gradient accumulation in one process.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleGPipe

from hybridformer.validation import values_checkable

__all__ = ["SCHEDULES", "PipelineStep", "TextClassifierStage", "build_schedule", "pipeline_step", "stage_layers"]

SCHEDULES = {"gpipe": ScheduleGPipe, "1f1b": Schedule1F1B}
"""Pipeline schedules by name: GPipe (all forwards, then all backwards) and 1F1B (interleaved,
at most ``pp`` microbatches' activations alive per stage)."""


def stage_layers(n_layers: int, pp: int, stage: int) -> range:
    """Block indices of ``stage`` when ``n_layers`` blocks split into ``pp`` stages (earlier stages
    take one more block when the split is uneven, as the first also embeds)."""
    if pp > n_layers:
        raise ValueError(f"parallel.pp: {pp} stages need at least {pp} blocks, the model has n_layers={n_layers}")
    base, extra = divmod(n_layers, pp)
    start = stage * base + min(stage, extra)
    return range(start, start + base + (1 if stage < extra else 0))


class TextClassifierStage(nn.Module):
    """Stage ``stage`` of ``pp`` of a :class:`~hybridformer.models.TextClassifier`.

    Takes the classifier's modules (no copy): built on the meta device, each rank keeps only its
    stage's parameters once the model is dropped.

    Forward: stage 0 takes ``(input_ids, attention_mask)``, later stages ``(hidden, mask, aux)``;
    every stage but the last returns ``(hidden, mask, aux)``, the last ``(logits, aux)``.
    """

    def __init__(self, model: nn.Module, stage: int, pp: int) -> None:
        super().__init__()
        encoder = model.encoder
        self.first, self.last = stage == 0, stage == pp - 1
        self.encoder = nn.Module()
        if self.first:
            self.encoder.embeddings = encoder.embeddings
        layers = stage_layers(len(encoder.blocks), pp, stage)
        self.encoder.blocks = nn.ModuleDict({str(i): encoder.blocks[i] for i in layers})
        if self.last:
            self.encoder.final_norm = encoder.final_norm
            self.encoder.pooler = encoder.pooler  # unused by the classifier; kept so checkpoints are whole
            self.head = model.head
        self._check_inputs = encoder._check_inputs
        self.d_model = encoder.config.d_model
        self.num_labels = model.num_labels

    def io_meta(self, microbatch: int, seq_len: int) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
        """Meta tensors of this stage's inputs and outputs for one microbatch of (microbatch, seq_len)
        tokens: the pipeline's buffers are sized from them, with no trial forward."""
        b, n, d = microbatch, seq_len, self.d_model

        def meta(*shape: int, dtype: torch.dtype = torch.float32, grad: bool = False) -> Tensor:
            return torch.empty(shape, dtype=dtype, device="meta", requires_grad=grad)

        # hidden states and aux losses carry gradients back; the mask does not
        carried = (meta(b, n, d, grad=True), meta(b, n), meta(b, grad=True))
        inputs = (meta(b, n, dtype=torch.long), meta(b, n, dtype=torch.long)) if self.first else carried
        outputs = (meta(b, self.num_labels, grad=True), meta(b, grad=True)) if self.last else carried
        return inputs, outputs

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        if self.first:
            input_ids, attention_mask = inputs
            mask, token_types = self._check_inputs(input_ids, attention_mask, None)
            x = self.encoder.embeddings(input_ids, mask, token_types)
            aux = x.new_zeros(x.shape[0])  # (B,)
        else:
            x, mask_f, aux = inputs
            mask = mask_f.bool()
        key_padding_mask = None if values_checkable(mask) and bool(mask.all()) else mask
        for block in self.encoder.blocks.values():
            out = block(x, key_padding_mask=key_padding_mask)
            x = out.hidden_states
            aux = aux + out.aux_loss
        if not self.last:
            return x, mask.to(x.dtype), aux
        if self.encoder.final_norm is not None:
            x = self.encoder.final_norm(x)
        return self.head(x, mask), aux


def classification_loss(output: tuple[Tensor, Tensor], labels: Tensor) -> Tensor:
    """The last stage's microbatch loss: mean cross-entropy plus the gates' aux loss (the same value
    in every row of ``aux``)."""
    logits, aux = output
    return F.cross_entropy(logits, labels) + aux[0]


def build_schedule(
    stage_module: nn.Module,
    pp_mesh: DeviceMesh,
    device: torch.device,
    *,
    n_microbatches: int,
    microbatch_size: int,
    seq_len: int,
    schedule: Literal["gpipe", "1f1b"] = "1f1b",
    loss_fn: Callable[[tuple[Tensor, Tensor], Tensor], Tensor] = classification_loss,
):
    """Wrap this rank's stage in a ``PipelineStage`` and a schedule over ``pp_mesh``.

    Every batch must then be (n_microbatches x microbatch_size, seq_len): the stages exchange
    buffers of fixed shapes (pad every batch to ``seq_len``).
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"parallel.schedule: must be one of {sorted(SCHEDULES)}, got {schedule!r}")
    if n_microbatches < 1:
        raise ValueError(f"parallel.microbatches: must be >= 1, got {n_microbatches}")
    inputs, outputs = stage_module.io_meta(microbatch_size, seq_len)
    stage_module.microbatch_size, stage_module.seq_len = microbatch_size, seq_len
    stage = PipelineStage(
        stage_module, pp_mesh.get_local_rank(), pp_mesh.size(), device,
        input_args=inputs, output_args=outputs, group=pp_mesh.get_group(),
    )
    return SCHEDULES[schedule](stage, n_microbatches=n_microbatches, loss_fn=loss_fn)


@dataclass
class PipelineStep:
    """What one pipelined forward + backward returns."""

    loss: Tensor
    """Scalar mean loss over the microbatches, the same on every rank (broadcast from the last stage)."""


def pipeline_step(schedule, batch: dict[str, Tensor], pp_mesh: DeviceMesh) -> PipelineStep:
    """Forward and backward of one local batch through the pipeline (no optimizer step).

    Args:
        schedule: from :func:`build_schedule`.
        batch: ``input_ids`` and ``attention_mask`` (B, N) and ``labels`` (B,); B must be a multiple
            of the number of microbatches.
        pp_mesh: the pipeline dimension of the mesh.
    """
    stage = schedule._stage
    n_micro = schedule._n_microbatches
    shape = tuple(batch["input_ids"].shape)
    want = (n_micro * stage.submod.microbatch_size, stage.submod.seq_len)
    if shape != want:
        raise ValueError(
            f"parallel: a pipelined batch must be {n_micro} microbatches x {want[0] // n_micro} examples of "
            f"{want[1]} tokens = {want}, got input_ids {shape} (pad every batch to the same length)"
        )
    losses: list[Tensor] = []
    inputs = (batch["input_ids"], batch["attention_mask"].long()) if stage.is_first else ()
    target = batch["labels"] if stage.is_last else None
    schedule.step(*inputs, target=target, losses=losses)
    loss = torch.stack(losses).mean().detach() if stage.is_last else torch.zeros((), device=stage.device)
    last = pp_mesh.size() - 1
    torch.distributed.broadcast(loss, group=pp_mesh.get_group(), group_src=last)
    return PipelineStep(loss=loss)
