"""Step-by-step decoding of the joint decoder: per-sequence state, prefill, and a batch of sequences.

The API a server's continuous batching needs (vLLM's split of scheduling from model execution):

- :func:`prefill` runs the prompts, one sequence at a time, and returns one :class:`SequenceState`
  per prompt (its self-attention caches, its cross-attention keys/values, its tokens) with the
  next-token logits. Sequences never share a cache, so each is at its own position.
- :class:`DecodeBatch` holds the sequences being decoded together. :meth:`DecodeBatch.step` feeds one
  token to every member and returns their next-token logits; :meth:`DecodeBatch.keep` drops finished
  members or follows beams (a repeated index forks the state); :meth:`DecodeBatch.add` lets a newly
  prefilled sequence join between two steps.

Per step, everything but the self-attention core runs batched (embeddings, cross-attention over the
padded stack of the members' context, FFN, LM head); self-attention runs per member over its own
:class:`~hybridformer.attention.KVCache`, O(window + global_k) per token for ``kind="hybrid"``.

With ``use_cache=False`` the same objects recompute the whole decoder over every member's tokens at each
step (right-padded; the reference the cached path is tested against).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from hybridformer.attention import KVCache
from hybridformer.fusion import CrossModalKV, JointDecoder, stack_kv

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
    """Per decoder block, the self-attention cache; None when decoding without cache."""

    def fork(self) -> SequenceState:
        """An independent copy (a beam that branches). Cheap: cache tensors are never modified in
        place (a cache update builds new tensors), so copying the cache objects shares the tensors."""
        caches = None if self.caches is None else [copy.copy(c) for c in self.caches]
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

    Args:
        decoder: the joint decoder.
        members: the sequences' states (all with caches, or all without).
    """

    def __init__(self, decoder: JointDecoder, members: Sequence[SequenceState]) -> None:
        self.decoder = decoder
        self.members = list(members)
        self._kv: list[CrossModalKV | None] | None = None  # stacked context, rebuilt when members change
        self.use_cache = bool(self.members) and self.members[0].caches is not None

    def __len__(self) -> int:
        return len(self.members)

    def add(self, state: SequenceState) -> None:
        """A newly prefilled sequence joins (continuous batching)."""
        if self.members and (state.caches is not None) != self.use_cache:
            raise ValueError("state: cached and uncached sequences cannot be decoded in one batch")
        self.use_cache = state.caches is not None
        self.members.append(state)
        self._kv = None

    def keep(self, indices: Sequence[int]) -> None:
        """Keep the members ``indices`` in that order; an index given twice forks its state.

        Drops finished sequences (``keep(unfinished)``) or follows beam search's parents.
        """
        seen: set[int] = set()
        members = []
        for i in indices:
            members.append(self.members[i].fork() if i in seen else self.members[i])
            seen.add(i)
        if self._kv is not None and members:
            index = torch.as_tensor(list(indices), dtype=torch.long, device=self._device())
            self._kv = [None if kv is None else kv.select(index) for kv in self._kv]
        else:
            self._kv = None
        self.members = members

    def step(self, tokens: Tensor) -> Tensor:
        """Feed ``tokens`` (LongTensor (B,), one per member); return next-token logits (B, vocab_size)."""
        if tokens.shape != (len(self.members),):
            raise ValueError(f"tokens: expected shape ({len(self.members)},), one per member, got {tuple(tokens.shape)}")
        for state, token in zip(self.members, tokens.tolist()):
            state.tokens.append(token)
        if not self.use_cache:
            return self._recompute()
        out = self.decoder(tokens[:, None], kv=self._stacked_kv(), caches=[s.caches for s in self.members])
        return out.logits[:, -1]

    def _device(self) -> torch.device:
        return self.decoder.token_embeddings.weight.device

    def _stacked_kv(self) -> list[CrossModalKV | None]:
        if self._kv is None:
            per_block = zip(*(s.kv for s in self.members))
            self._kv = [stack_kv(rows) for rows in per_block]
        return self._kv

    def _recompute(self) -> Tensor:
        """The uncached step: the whole decoder over every member's tokens (right-padded)."""
        lengths = [len(s.tokens) for s in self.members]
        ids = torch.full((len(lengths), max(lengths)), self.decoder.config.pad_token_id, dtype=torch.long)
        for i, state in enumerate(self.members):
            ids[i, : lengths[i]] = torch.tensor(state.tokens)
        ids = ids.to(self._device())
        mask = torch.arange(ids.shape[1], device=ids.device)[None, :] < torch.tensor(lengths, device=ids.device)[:, None]
        last = torch.tensor(lengths, device=ids.device) - 1
        return self.decoder(ids, attention_mask=mask, kv=self._stacked_kv(), logits_at=last).logits[:, 0]
