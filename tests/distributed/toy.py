"""The tiny classifier, data and single-process reference the distributed tests share.

Imported by the torchrun worker (every rank runs the reference itself, on the whole global batch)
and by the pytest side (the 2 ranks -> 1 rank resume runs in the test process).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from hybridformer.attention import AttentionConfig
from hybridformer.encoders.text import TextEncoder
from hybridformer.encoders.text_config import TextEncoderConfig
from hybridformer.losses import ClassificationObjective
from hybridformer.models import TextClassifier
from hybridformer.sparsity import SparsityConfig

VOCAB, SEQ, LABELS = 61, 12, 3
LR = 3e-3


@dataclass
class Case:
    """One parallel configuration checked against the reference."""

    name: str
    dp_shard: int = 1
    dp_replicate: int = 1
    tp: int = 1
    pp: int = 1
    schedule: str = "1f1b"
    microbatches: int = 1
    gated: bool = False
    """Gated FFNs (replicated under TP); Gumbel noise is seeded per chunk so the reference draws the same."""
    combine: str = "union"
    ac: bool = False
    """Activation checkpointing of every block."""
    steps: int = 5
    batch_size: int = 0
    """Examples per step in all; 0 = 2 per chunk (dp x microbatches chunks)."""
    rtol: float = 1e-5
    """Relative tolerance on every step's loss."""
    selection: str = "pooled"
    """The hybrid layers' global selection (AttentionConfig's default, or "scorer")."""
    sync_selection: bool = True
    """False removes what parallelize adds to the selection under TP (negative controls): the
    all-reduce of the scorer's gradient (its weights must then drift from the reference), or the
    pooled selection's importance sum over the TP ranks (the ranks must then pick different sets)."""
    param_rtol: float = 1e-5
    """Tolerance on each parameter after the last step: norm of the difference / norm."""

    @property
    def world(self) -> int:
        return self.dp_shard * self.dp_replicate * self.tp * self.pp

    @property
    def dp(self) -> int:
        return self.dp_shard * self.dp_replicate


def build_model(case: Case, seed: int = 0) -> TextClassifier:
    """Same weights on every rank: an eager build under ``seed``."""
    torch.manual_seed(seed)
    # Unbounded scores (score_cap 0): with the default tanh cap the toy's scores sit in near-ties, where
    # a rounding-level difference between the sharded and the single-process run can flip a discrete
    # top-k choice (seen: dp2 x tp2 weights 5.6e-4 apart after 5 steps, against 2e-6 uncapped).
    # Pooled: blocks of 8 tokens, so the 12-token sequences have two pool blocks.
    attention = AttentionConfig(kind="hybrid", window=4, global_k=2, selection_noise=0.0, combine=case.combine,
                                score_cap=0.0, selection=case.selection, pool_block=8)
    sparsity = SparsityConfig(enabled=case.gated, n_groups=4, target_active=0.5)
    config = TextEncoderConfig(
        vocab_size=VOCAB, d_model=32, n_layers=4, n_heads=4, d_ff=64, max_positions=SEQ,
        dropout=0.0, attention=attention, sparsity=sparsity,
    )
    model = TextClassifier(TextEncoder(config), LABELS, dropout=0.0)
    with torch.no_grad():  # the scorer's output layer and the pooling start at zero: give them signal to test TP on
        for p in model.parameters():
            if not p.abs().sum():
                p.normal_(std=0.05)
    for block in model.encoder.blocks:
        # The key bias adds q_i . b_k to every logit of query i alike, so softmax cancels it and its
        # gradient is 0 up to rounding; Adam would turn that noise into +-lr steps that differ between
        # any two summation orders. Frozen, so the weight comparison measures the parallelism.
        block.attention.k_proj.bias.requires_grad_(False)
        if case.combine == "gated" and case.selection == "scorer":  # the same for the scorer's bias: the global
            block.attention.scorer.net.bias.requires_grad_(False)  # branch's own softmax spans only the selected keys
        if case.selection == "pooled":  # the same for the pooling bias: one constant per head in a softmax
            block.attention.pooled.pool_proj.bias.requires_grad_(False)
    return model


def global_batch(case: Case, step: int) -> dict[str, torch.Tensor]:
    """The step's whole batch (``case.batch_size`` examples), with padding; the same for every case
    of one size."""
    gen = torch.Generator().manual_seed(1000 + step)
    size = case.batch_size or case.dp * case.microbatches * 2
    ids = torch.randint(1, VOCAB, (size, SEQ), generator=gen)
    lengths = torch.randint(SEQ // 2, SEQ + 1, (size,), generator=gen)
    mask = torch.arange(SEQ)[None, :] < lengths[:, None]
    ids = ids.masked_fill(~mask, 0)
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.randint(0, LABELS, (size,), generator=gen)}


def chunk_seed(step: int, chunk: int) -> int:
    """Seed set before the forward of one chunk (gate sampling noise) in both runs."""
    return 7919 * step + chunk


OBJECTIVE = ClassificationObjective()


def loss_of(model: TextClassifier, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean cross-entropy plus the gates' aux loss."""
    return OBJECTIVE(model, batch).loss


def make_optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.01, foreach=False)


def reference_run(
    case: Case, model: TextClassifier, steps: range, optimizer: torch.optim.Optimizer | None = None
) -> tuple[list[float], TextClassifier]:
    """Single-process training: each step accumulates the mean loss over the dp x microbatches chunks
    (gradient accumulation over exactly the chunks the parallel run spreads out)."""
    model = copy.deepcopy(model) if optimizer is None else model
    optimizer = optimizer or make_optimizer(model)
    n_chunks = case.dp * case.microbatches
    losses = []
    for step in steps:
        batch = global_batch(case, step)
        total = 0.0
        for c, chunk in enumerate(zip(*(t.chunk(n_chunks) for t in batch.values()))):
            torch.manual_seed(chunk_seed(step, c))
            loss = loss_of(model, dict(zip(batch, chunk))) / n_chunks
            loss.backward()
            total += float(loss.detach())
        optimizer.step()
        optimizer.zero_grad()
        losses.append(total)
    return losses, model


MEMORY_MODEL = dict(vocab_size=4000, d_model=128, n_layers=4, n_heads=4, d_ff=512, max_positions=64)
MEMORY_BATCH = 8  # sequences per data-parallel rank, of MEMORY_MODEL["max_positions"] tokens


def memory_model(seed: int = 0) -> TextClassifier:
    """A model large enough that its tensors, not bookkeeping, fill memory (1.4M parameters)."""
    torch.manual_seed(seed)
    attention = AttentionConfig(kind="hybrid", window=16, global_k=4, selection_noise=0.0)
    config = TextEncoderConfig(**MEMORY_MODEL, dropout=0.0, attention=attention)
    return TextClassifier(TextEncoder(config), LABELS, dropout=0.0)


def _local_bytes(t: torch.Tensor) -> int:
    local = t.to_local() if hasattr(t, "to_local") else t
    return local.numel() * local.element_size()


def measure_step_memory(model: torch.nn.Module, dp: int = 1) -> dict[str, int]:
    """Bytes this rank holds in one training step, by category: parameters, gradients and AdamW
    state as allocated (local shards), and the tensors autograd keeps for the backward pass at the
    end of the forward (unique storages, parameters excluded, found with ``saved_tensors_hooks``;
    sized after the forward, so FSDP's gathered weights, freed by then, count 0)."""
    optimizer = make_optimizer(model)
    gen = torch.Generator().manual_seed(0)
    n = MEMORY_MODEL["max_positions"]
    ids = torch.randint(1, MEMORY_MODEL["vocab_size"], (MEMORY_BATCH, n), generator=gen)
    labels = torch.randint(0, LABELS, (MEMORY_BATCH,), generator=gen)
    params = {_storage(p) for p in model.parameters()}
    saved: dict[int, torch.Tensor] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if _storage(t) not in params:
            saved[_storage(t)] = t.to_local() if hasattr(t, "to_local") else t
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = F.cross_entropy(model(ids).logits, labels)
    activations = sum(t.untyped_storage().nbytes() for t in saved.values())
    saved.clear()
    loss.backward()
    grads = sum(_local_bytes(p.grad) for p in model.parameters() if p.grad is not None)
    optimizer.step()
    state = sum(_local_bytes(v) for s in optimizer.state.values() for v in s.values() if v.dim() > 0)
    return {
        "params": sum(_local_bytes(p) for p in model.parameters()),
        "grads": grads,
        "optimizer": state,
        "activations": activations,
    }


def _storage(t: torch.Tensor) -> int:
    local = t.to_local() if hasattr(t, "to_local") else t
    return local.untyped_storage().data_ptr()
