"""Step-by-step decoding of the joint decoder: per-sequence state, prefill, and a batch of sequences.

The API a server's continuous batching needs (vLLM's split of scheduling from model execution):

- :func:`prefill` runs the prompts, one sequence at a time, and returns one :class:`SequenceState`
  per prompt (its self-attention caches, its cross-attention keys/values, its tokens) with the
  next-token logits. Sequences never share a cache, so each is at its own position.
- :class:`DecodeBatch` holds the sequences being decoded together. :meth:`DecodeBatch.step` feeds one
  token to every member and returns their next-token logits; :meth:`DecodeBatch.keep` drops finished
  members or follows beams (a repeated index forks the state); :meth:`DecodeBatch.add` lets a newly
  prefilled sequence join between two steps.

Per step, every op runs once for the whole batch, self-attention included: the members' prefilled
caches are packed into fixed-size ring buffers (``fusion/batched_decode.py``; O(window + global_k)
per token for ``kind="hybrid"``), the q/k/v projections are fused and the cross-attention context is
stacked and masked once per batch. Layers the ring does not support (``kind="full"``, compressed
selection) attend per member over its own :class:`~hybridformer.attention.KVCache`.

With ``use_cache=False`` the same objects recompute the whole decoder over every member's tokens at each
step (right-padded; the reference the cached path is tested against).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from hybridformer.attention import KVCache
from hybridformer.fusion import CrossModalKV, JointDecoder, stack_kv
from hybridformer.fusion.batched_decode import FusedProjection, RingCache, StepLayout, pack, ring_supported, unpack
from hybridformer.fusion.cross_modal import CrossStep

__all__ = ["SequenceState", "DecodeBatch", "prefill"]


@dataclass
class SequenceState:
    """Everything decoding one sequence needs: what a server keeps per request."""

    tokens: list[int]
    """Every token fed so far (the prompt, then the generated ones)."""
    kv: list[CrossModalKV | None]
    """Per decoder block, the cross-attention keys/values of this sequence's context ((1, H, T, D),
    only real context tokens; None: no context). Computed once, never changed."""
    caches: list[KVCache] | None
    """Per decoder block, the self-attention cache; None when decoding without cache. While the sequence
    is decoded in a :class:`DecodeBatch` its state lives in the batch's buffers: read ``tokens`` and
    ``caches`` through ``batch.members``, which brings them up to date."""

    def fork(self) -> SequenceState:
        """An independent copy (a beam that branches). Cheap: the caches share their tensors, except the
        pooled selection's key/value history, which is written in place and so copied (:meth:`KVCache.fork`)."""
        caches = None if self.caches is None else [c.fork() for c in self.caches]
        return SequenceState(list(self.tokens), self.kv, caches)


def prefill(
    decoder: JointDecoder,
    prompts: Sequence[Tensor],
    kv_rows: Sequence[list[CrossModalKV | None]],
    *,
    use_cache: bool = True,
) -> tuple[list[SequenceState], Tensor]:
    """Run the prompts; return their states and the logits of each one's next token.

    Args:
        decoder: the joint decoder (in eval mode for deterministic results).
        prompts: one non-empty 1-D LongTensor of token ids per sequence (no padding).
        kv_rows: per sequence, its per-block cross-attention keys/values (``CrossModalKV.row``).
        use_cache: build self-attention caches (False: states for recomputing decoding).

    Returns:
        (states, logits (B, vocab_size)).
    """
    if len(prompts) != len(kv_rows):
        raise ValueError(f"kv_rows: expected one per prompt ({len(prompts)}), got {len(kv_rows)}")
    states = [SequenceState(p.tolist(), list(kv), decoder.new_caches() if use_cache else None)
              for p, kv in zip(prompts, kv_rows)]
    if not use_cache:
        return states, DecodeBatch(decoder, states)._recompute()
    logits = []
    for prompt, state in zip(prompts, states):
        last = torch.tensor([prompt.numel() - 1], device=prompt.device)
        out = decoder(prompt[None], kv=state.kv, caches=[state.caches], logits_at=last)
        logits.append(out.logits[0, -1])
    return states, torch.stack(logits)


class DecodeBatch:
    """Sequences decoded together, one token per member per step.

    With caches, a step runs once for the whole batch over fixed-size ring buffers
    (``fusion/batched_decode.py``), built from the members' prefilled caches at the first step; the
    members' :class:`SequenceState` (tokens, caches) are brought up to date whenever ``members`` is
    read. Layers the ring does not support (``kind="full"``, compressed selection) decode over the
    per-sequence caches instead.

    Args:
        decoder: the joint decoder.
        members: the sequences' states (all with caches, or all without).
    """

    def __init__(self, decoder: JointDecoder, members: Sequence[SequenceState]) -> None:
        self.decoder = decoder
        self._members = list(members)
        self._kv: list[CrossModalKV | None] | None = None  # stacked context, rebuilt when members change
        self.use_cache = bool(self._members) and self._members[0].caches is not None
        self._ring_ok = ring_supported(decoder.config.attention)
        self._projections: list[FusedProjection] | None = None
        self._reset_ring()

    def _reset_ring(self) -> None:
        self._rings: list[RingCache] | None = None  # per block; None = not packed (members' caches are current)
        self._context: list[CrossStep | None] | None = None
        self._pending: list[Tensor] = []  # tokens fed since the members' token lists were last updated
        self._dirty = False  # the ring buffers are ahead of the members' caches

    def __len__(self) -> int:
        return len(self._members)

    @property
    def members(self) -> list[SequenceState]:
        """The members' states, up to date (their caches rebuilt from the ring buffers if needed)."""
        self._sync()
        return self._members

    def add(self, state: SequenceState) -> None:
        """A newly prefilled sequence joins (continuous batching)."""
        if self._members and (state.caches is not None) != self.use_cache:
            raise ValueError("state: cached and uncached sequences cannot be decoded in one batch")
        self._sync()
        self._reset_ring()
        self.use_cache = state.caches is not None
        self._members.append(state)
        self._kv = None

    def keep(self, indices: Sequence[int]) -> None:
        """Keep the members ``indices`` in that order; an index given twice forks its state.

        Drops finished sequences (``keep(unfinished)``) or follows beam search's parents.
        """
        indices = list(indices)
        if indices == list(range(len(self._members))):
            return
        self._flush_tokens()
        seen: set[int] = set()
        members = []
        for i in indices:
            members.append(self._members[i].fork() if i in seen else self._members[i])
            seen.add(i)
        if members:
            index = torch.as_tensor(indices, dtype=torch.long, device=self._device())
            if self._kv is not None:
                self._kv = [None if kv is None else kv.select(index) for kv in self._kv]
            if self._rings is not None:
                self._rings = [ring.select(index) for ring in self._rings]
                self._ring_positions = self._ring_positions.index_select(0, index)
                self._positions = self._positions.index_select(0, index)
                self._lengths = [self._lengths[i] for i in indices]
                self._rows = torch.arange(len(indices), device=index.device)
        else:
            self._kv = None
            self._reset_ring()
        self._context = None
        self._members = members

    def step(self, tokens: Tensor) -> Tensor:
        """Feed ``tokens`` (LongTensor (B,), one per member); return next-token logits (B, vocab_size)."""
        if tokens.shape != (len(self._members),):
            raise ValueError(f"tokens: expected shape ({len(self._members)},), one per member, got {tuple(tokens.shape)}")
        vocab = self.decoder.config.vocab_size
        if tokens.device.type == "cpu" and any(not 0 <= t < vocab for t in tokens.tolist()):  # no sync on CPU
            raise ValueError(f"tokens: ids must be in [0, vocab_size={vocab}), got {tokens.tolist()}")
        if not self.use_cache or not self._ring_ok:
            for state, token in zip(self._members, tokens.tolist()):
                state.tokens.append(token)
            if not self.use_cache:
                return self._recompute()
            out = self.decoder(tokens[:, None], kv=self._stacked_kv(), caches=[s.caches for s in self._members])
            return out.logits[:, -1]
        return self._ring_step(tokens)

    def _ring_step(self, tokens: Tensor) -> Tensor:
        """One batched step over the ring buffers; reads no tensor value on the host."""
        config = self.decoder.config
        if self._rings is None:
            self._pack()
        if max(self._lengths) >= config.max_positions:
            raise ValueError(f"tokens: position {max(self._lengths)} is past max_positions={config.max_positions} "
                             f"(prompt plus new tokens too long)")
        window, block = config.attention.window, config.attention.local == "block"
        positions = self._positions
        slots = positions % window  # (B,)
        self._ring_positions[self._rows, slots] = positions
        held = self._ring_positions  # (B, W)
        sees = held >= 0
        if block:  # the current block only: slots 0..p % W (a block starts at slot 0)
            sees = sees & (self._slot_index[None, :] <= slots[:, None])
        closing = [i for i, n in enumerate(self._lengths) if (n + 1) % window == 0]
        if not closing:
            closing_rows = None
        elif len(closing) == len(self._lengths):
            closing_rows = self._rows
        else:
            closing_rows = torch.tensor(closing, device=positions.device)
        step = StepLayout(self._rows, positions, slots, held, sees, closing_rows)
        logits = self.decoder.decode_step(tokens, step, self._rings, self._fused(), self._prepared_context())
        self._pending.append(tokens.clone())
        self._dirty = True
        self._positions = positions + 1
        self._lengths = [n + 1 for n in self._lengths]
        return logits

    def _pack(self) -> None:
        """Build the ring buffers from the members' per-sequence caches."""
        attention = self.decoder.config.attention
        self._lengths = [s.caches[0].length for s in self._members]
        like = self.decoder.token_embeddings.weight
        packed = [pack([s.caches[layer] for s in self._members], self._lengths, attention, like)
                  for layer in range(len(self.decoder.blocks))]
        self._rings = [ring for ring, _ in packed]
        self._ring_positions = packed[0][1]  # (B, W), the same for every layer
        device = like.device
        self._positions = torch.tensor(self._lengths, device=device)
        self._rows = torch.arange(len(self._members), device=device)
        self._slot_index = torch.arange(attention.window, device=device)

    def _flush_tokens(self) -> None:
        if self._pending:
            fed = torch.stack(self._pending, dim=1).tolist()  # (B, steps)
            for state, row in zip(self._members, fed):
                state.tokens.extend(row)
            self._pending = []

    def _sync(self) -> None:
        """Bring the members' tokens and caches up to date with the ring buffers."""
        self._flush_tokens()
        if self._rings is None or not self._dirty:
            return
        attention = self.decoder.config.attention
        for i, state in enumerate(self._members):
            state.caches = [unpack(ring, self._ring_positions, i, self._lengths[i], attention) for ring in self._rings]
        self._dirty = False  # the caches are current; the buffers stay valid as well

    def _fused(self) -> list[FusedProjection]:
        if self._projections is None:
            self._projections = [FusedProjection(block.self_attention) for block in self.decoder.blocks]
        return self._projections

    def _prepared_context(self) -> list[CrossStep | None]:
        if self._context is None:
            self._context = [
                None if kv is None or block.cross_attention is None else block.cross_attention.prepare_step(kv)
                for block, kv in zip(self.decoder.blocks, self._stacked_kv())
            ]
        return self._context

    def _device(self) -> torch.device:
        return self.decoder.token_embeddings.weight.device

    def _stacked_kv(self) -> list[CrossModalKV | None]:
        if self._kv is None:
            per_block = zip(*(s.kv for s in self._members))
            self._kv = [stack_kv(rows) for rows in per_block]
        return self._kv

    def _recompute(self) -> Tensor:
        """The uncached step: the whole decoder over every member's tokens (right-padded)."""
        members = self._members
        lengths = [len(s.tokens) for s in members]
        ids = torch.full((len(lengths), max(lengths)), self.decoder.config.pad_token_id, dtype=torch.long)
        for i, state in enumerate(members):
            ids[i, : lengths[i]] = torch.tensor(state.tokens)
        ids = ids.to(self._device())
        mask = torch.arange(ids.shape[1], device=ids.device)[None, :] < torch.tensor(lengths, device=ids.device)[:, None]
        last = torch.tensor(lengths, device=ids.device) - 1
        return self.decoder(ids, attention_mask=mask, kv=self._stacked_kv(), logits_at=last).logits[:, 0]
