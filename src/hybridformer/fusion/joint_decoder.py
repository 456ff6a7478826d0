"""The joint decoder: token + position embeddings, a stack of decoder blocks, a tied LM head.

Two ways to run it, with the same numbers:

- a plain forward over whole (right-padded) sequences, for training and uncached generation;
- step by step with one :class:`~hybridformer.attention.KVCache` per layer and per sequence
  (``caches[i][layer]``), each sequence at its own position, for cached generation. The cost of a new
  token is O(window + global_k) in self-attention, whatever the length so far.

The cross-attention keys/values depend on the context only: :meth:`JointDecoder.cross_kv` computes
them once per input, one :class:`~hybridformer.fusion.CrossModalKV` per layer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hybridformer.attention import KVCache
from hybridformer.fusion.batched_decode import FusedProjection, RingCache, StepLayout, layer_norm_of
from hybridformer.fusion.cross_modal import CrossModalKV, CrossStep, ModalityTokens
from hybridformer.fusion.decoder import DecoderBlock, DecoderConfig
from hybridformer.initialization import allocating, init_children
from hybridformer.sparsity import GateStats

__all__ = ["JointDecoder", "DecoderOutput"]


@dataclass
class DecoderOutput:
    """What the joint decoder returns."""

    hidden_states: Tensor
    """(B, N, d_model) tokens after the last block and the final LayerNorm."""
    logits: Tensor
    """(B, N, vocab_size) next-token scores (tied to the token embeddings); (B, 1, vocab_size) with
    ``logits_at``."""
    aux_loss: Tensor
    """Scalar sum over blocks of the FFN gates' auxiliary loss (0 when gates are off)."""
    gate_stats: list[GateStats | None]
    """Per block, the FFN gates' statistics (None when gates are off)."""


class JointDecoder(nn.Module):
    """Autoregressive decoder over text tokens with gated cross-attention to the other modalities.

    Args:
        config: the decoder's :class:`DecoderConfig`.
    """

    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        self.config = config
        with allocating():
            self.token_embeddings = nn.Embedding(config.vocab_size, config.d_model)
            self.position_embeddings = nn.Embedding(config.max_positions, config.d_model)
            self.dropout = nn.Dropout(config.dropout)
            self.blocks = nn.ModuleList(DecoderBlock(config) for _ in range(config.n_layers))
            self.final_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.init_weights()

    def init_weights(self) -> None:
        """Every layer's default init, then GPT-2's N(0, 0.02) for the (tied) embeddings."""
        init_children(self)
        with torch.no_grad():
            for table in (self.token_embeddings, self.position_embeddings):
                nn.init.normal_(table.weight, std=0.02)

    def cross_kv(self, context: Mapping[str, ModalityTokens]) -> list[CrossModalKV | None]:
        """Each block's cross-attention keys/values of ``context`` (computed once per input).

        Args:
            context: modality -> :class:`ModalityTokens` for the batch; may be empty.

        Returns:
            One :class:`CrossModalKV` (or None: no context / no cross-attention) per block.
        """
        if not context or not self.config.has_context:
            if context and not self.config.has_context:
                raise ValueError(f"context: this decoder has no cross-attention, got modalities {sorted(context)}")
            return [None] * len(self.blocks)
        return [block.cross_attention.project(context) for block in self.blocks]

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        kv: Sequence[CrossModalKV | None] | None = None,
        *,
        caches: Sequence[Sequence[KVCache]] | None = None,
        positions: Tensor | None = None,
        logits_at: Tensor | None = None,
    ) -> DecoderOutput:
        """Run the decoder.

        Args:
            input_ids: LongTensor (B, N). Without caches: whole sequences, right-padded; with caches:
                the next N tokens of every sequence.
            attention_mask: bool (B, N), True = real token; None = all real. Real tokens must come
                first in a row (right padding): a causal token never sees the padding after it.
            kv: per block, the cross-attention keys/values of the B examples (:meth:`cross_kv`);
                None = no context.
            caches: for step-by-step decoding, ``caches[i]`` is sequence i's list of one KVCache per
                block (updated in place); None for a plain forward.
            positions: LongTensor (B, N) position of every token; None = 0..N-1 (plain forward) or
                each cache's length onwards (cached).
            logits_at: LongTensor (B,): score only this position of each row (logits (B, 1, V)), e.g.
                the last real token when generating; None = every position.

        Returns:
            :class:`DecoderOutput`.
        """
        batch, n = self._check_inputs(input_ids, attention_mask, kv, caches)
        if positions is None:
            start = torch.tensor([c[0].length for c in caches] if caches is not None else [0] * batch)
            positions = (start[:, None] + torch.arange(n)[None, :]).to(input_ids.device)  # (B, N)
        if int(positions.max()) >= self.config.max_positions:
            raise ValueError(
                f"input_ids: position {int(positions.max())} is past max_positions={self.config.max_positions} "
                f"(prompt plus new tokens too long)"
            )
        mask = None if attention_mask is None or bool(attention_mask.all()) else attention_mask.bool()
        x = self.dropout(self.token_embeddings(input_ids) + self.position_embeddings(positions))
        kv = list(kv) if kv is not None else [None] * len(self.blocks)
        aux_loss = torch.zeros((), device=x.device)
        gate_stats: list[GateStats | None] = []
        for layer, block in enumerate(self.blocks):
            layer_caches = [c[layer] for c in caches] if caches is not None else None
            out = block(x, key_padding_mask=mask, kv=kv[layer], caches=layer_caches)
            x = out.hidden_states
            aux_loss = aux_loss + out.aux_loss
            gate_stats.append(out.gate_stats)
        x = self.final_norm(x)
        scored = x if logits_at is None else x[torch.arange(batch, device=x.device), logits_at][:, None]
        logits = F.linear(scored, self.token_embeddings.weight)  # (B, N or 1, vocab_size)
        return DecoderOutput(hidden_states=x, logits=logits, aux_loss=aux_loss, gate_stats=gate_stats)

    def decode_step(
        self,
        tokens: Tensor,
        step: StepLayout,
        rings: Sequence[RingCache],
        projections: Sequence[FusedProjection],
        context: Sequence[CrossStep | None],
    ) -> Tensor:
        """One token per sequence, batched over ring buffers (``fusion/batched_decode.py``): the
        cached forward of :meth:`forward` for N = 1, without host syncs (``DecodeBatch`` checks the
        inputs and keeps the buffers).

        Args:
            tokens: LongTensor (B,) the new token of every sequence, at ``step.positions``.
            step: the step's :class:`StepLayout`.
            rings, projections, context: per block, its buffers, fused projection and prepared context.

        Returns:
            (B, vocab_size) next-token logits.
        """
        table = self.token_embeddings.weight
        x = F.embedding(tokens, table, self.token_embeddings.padding_idx) + F.embedding(
            step.positions, self.position_embeddings.weight, self.position_embeddings.padding_idx
        )  # (B, d)
        x = self.dropout(x) if self.training else x  # (B, d): the step stays 2-D
        for block, ring, projection, ctx in zip(self.blocks, rings, projections, context):
            x = block.decode(x, ring, projection, step, ctx)
        return F.linear(layer_norm_of(self.final_norm, x), table)  # (B, vocab_size)

    def new_caches(self) -> list[KVCache]:
        """Fresh, empty self-attention caches for one sequence (one per block)."""
        return [KVCache() for _ in self.blocks]

    def _check_inputs(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None,
        kv: Sequence[CrossModalKV | None] | None,
        caches: Sequence[Sequence[KVCache]] | None,
    ) -> tuple[int, int]:
        vocab = self.config.vocab_size
        if not isinstance(input_ids, Tensor) or input_ids.dim() != 2 or input_ids.dtype.is_floating_point:
            got = tuple(input_ids.shape) if isinstance(input_ids, Tensor) else type(input_ids).__name__
            raise ValueError(f"input_ids: expected an integer tensor (B, N), got {got}")
        batch, n = input_ids.shape
        if batch == 0 or n == 0:
            raise ValueError(f"input_ids: expected a non-empty batch, got shape {(batch, n)}")
        low, high = int(input_ids.min()), int(input_ids.max())
        if low < 0 or high >= vocab:
            raise ValueError(f"input_ids: ids must be in [0, vocab_size={vocab}), got min {low} max {high}")
        if attention_mask is not None and tuple(attention_mask.shape) != (batch, n):
            raise ValueError(f"attention_mask: expected shape {(batch, n)} like input_ids, "
                             f"got {tuple(attention_mask.shape)}")
        if kv is not None and len(kv) != len(self.blocks):
            raise ValueError(f"kv: expected one entry per block ({len(self.blocks)}), got {len(kv)}")
        if caches is not None and (len(caches) != batch or any(len(c) != len(self.blocks) for c in caches)):
            raise ValueError(f"caches: expected {batch} lists (one per sequence) of {len(self.blocks)} caches")
        return batch, n
