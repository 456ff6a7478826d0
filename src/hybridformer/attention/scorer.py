"""The learned token scorer and the top-k selection of global tokens (SPEC §2).

A small layer reads every token's hidden state and gives it one score ``s_j``; the `global_k`
best-scoring tokens become global keys. Selection itself is a hard, non-differentiable top-k. The
scorer learns through score-weighted keys, straight-through (:func:`straight_through_bias`): a
selected key j's unnormalised attention weight ``exp(q_i·k_j)`` is treated as multiplied by a gate
``exp(s_j)``, i.e. ``s_j`` is added to its logits. The forward pass keeps the hard gate (the added
bias is exactly 0, so outputs equal plain masked attention over window ∪ selected); the backward pass
uses the gate's gradient ``d loss / d s_j = Σ_i p_ij (v_j - o_i)·dL/do_i`` — "would the loss drop if
the queries attended more to j". Tokens whose attention helps get higher scores, selected tokens that
do not help get lower ones and drop out; the shared scorer weights carry that to unselected tokens.
(A bounded gate such as ``sigmoid(s_j)`` saturates and learned markedly slower in our retrieval test.)

Hard top-k only ever gives gradient to tokens it picks, so an unlucky initial ranking could shut a
useful token out for good. Two things prevent that: the scorer's output layer starts at zero (every
token ties), and in training the ranking adds Gumbel noise (``AttentionConfig.selection_noise``):
top-k of ``s + τ·Gumbel`` samples K tokens without replacement from ``softmax(s / τ)``
(Gumbel-top-k), the exploration of noisy top-k gating. As the scorer learns, score gaps outgrow the
noise and training selection turns deterministic; eval and cached decoding use the plain top-k.

Two selection modes:

- non-causal, :func:`select_topk`: one set per sequence, shape (B, K), among non-padding tokens;
- causal, :func:`select_prefix_topk`: one set per query block (NSA-style), shape
  (B, ceil(N / window), K); block b's set is the top-K among positions in blocks < b, so the output at
  position i never depends on tokens after i, and step-by-step decoding (``cache.py``) rebuilds the
  same sets with the same :func:`merge_topk` as each block completes.

Empty slots (fewer eligible tokens than K) hold -1.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from hybridformer.initialization import allocating

__all__ = [
    "TokenScorer",
    "TopK",
    "selection_scores",
    "select_topk",
    "select_prefix_topk",
    "merge_topk",
    "selected_mask",
    "straight_through_bias",
]


class TokenScorer(nn.Module):
    """One score per token from its hidden state: a linear layer, or a small GELU MLP.

    The output layer starts at zero (all tokens score alike until the scorer has learnt).

    Args:
        d_model: hidden size of the tokens.
        hidden: width of the hidden layer; 0 means a single linear layer d_model -> 1.
    """

    def __init__(self, d_model: int, hidden: int = 0) -> None:
        super().__init__()
        with allocating():  # draws nothing: init_weights does
            out = nn.Linear(d_model if hidden == 0 else hidden, 1)
            self.net: nn.Module = out
            if hidden > 0:
                self.net = nn.Sequential(nn.Linear(d_model, hidden), nn.GELU(), out)
        self.init_weights()

    @property
    def out(self) -> nn.Linear:
        """The output layer (-> 1 score)."""
        return self.net if isinstance(self.net, nn.Linear) else self.net[-1]

    def init_weights(self) -> None:
        """(Re)initialise every parameter from the global RNG: the output layer drawn, then zeroed, then
        the hidden layer's nn.Linear defaults. The discarded draw keeps the random stream of earlier
        versions (the same seed gives the same initial weights as before init_weights existed)."""
        self.out.reset_parameters()
        _start_equal(self.out)
        if isinstance(self.net, nn.Sequential):
            self.net[0].reset_parameters()

    def forward(self, hidden_states: Tensor) -> Tensor:
        """Score tokens.

        Args:
            hidden_states: (B, N, d_model).

        Returns:
            (B, N) scores, differentiable.
        """
        return self.net(hidden_states).squeeze(-1)


def _start_equal(out: nn.Linear) -> None:
    # Start from equal scores: selection in training is then uniform Gumbel-top-k sampling, and no
    # token is shut out by an unlucky random initialisation before the scorer has learnt.
    with torch.no_grad():
        nn.init.zeros_(out.weight)
        nn.init.zeros_(out.bias)


def selection_scores(scores: Tensor, key_padding_mask: Tensor | None = None, noise: float = 0.0) -> Tensor:
    """Detached float32 scores used for ranking; padding tokens get -inf so they are never selected.

    Args:
        scores: (B, N) scorer output.
        key_padding_mask: bool (B, N), True = real token, or None.
        noise: temperature of Gumbel noise added to the scores (0 = none). The top-k of
            ``scores + noise · Gumbel`` samples k tokens without replacement from
            ``softmax(scores / noise)`` (Gumbel-top-k), so tokens the scorer ranks low still get picked,
            and thus a gradient, now and then.

    Returns:
        (B, N) float32 without gradient.
    """
    ranked = scores.detach().float()
    if noise > 0:
        gumbel = -torch.empty_like(ranked).exponential_().log()  # -log(Exp(1)) ~ Gumbel(0, 1)
        ranked = ranked + noise * gumbel
    if key_padding_mask is not None:
        ranked = ranked.masked_fill(~key_padding_mask, float("-inf"))
    return ranked


def _empty_slots_to_minus_one(values: Tensor, indices: Tensor) -> Tensor:
    # A slot filled from an ineligible token (score -inf: padding, or the initial empty set) is empty.
    return indices.masked_fill(values == float("-inf"), -1)


def select_topk(
    scores: Tensor, k: int, key_padding_mask: Tensor | None = None, noise: float = 0.0, pinned: int = 0
) -> Tensor:
    """Top-k tokens of each sequence (non-causal selection).

    Args:
        scores: (B, N) scorer output.
        k: number of slots K.
        key_padding_mask: bool (B, N), True = real token, or None.
        noise: Gumbel temperature for exploration in training (:func:`selection_scores`).
        pinned: the first ``pinned`` positions are always selected (when they are real tokens).

    Returns:
        LongTensor (B, K) of token positions, sorted by decreasing score (pinned positions first); -1
        in slots left empty when a sequence has fewer than K real tokens.
    """
    ranked = selection_scores(scores, key_padding_mask, noise)
    if pinned:
        # +inf ranks them first; padding keeps its -inf (selection_scores applied the mask already).
        head = ranked[:, :pinned]
        ranked = torch.cat([head.masked_fill(head > float("-inf"), float("inf")), ranked[:, pinned:]], dim=-1)
    batch, n = ranked.shape
    take = min(k, n)
    values, indices = ranked.topk(take, dim=-1)  # (B, take)
    indices = _empty_slots_to_minus_one(values, indices)
    if take < k:
        indices = torch.cat([indices, indices.new_full((batch, k - take), -1)], dim=-1)
    return indices


class TopK(NamedTuple):
    """A running top-K set (see :func:`merge_topk`)."""

    scores: Tensor
    """(B, K) float32 scores, -inf in empty slots."""
    indices: Tensor
    """(B, K) token positions, -1 in empty slots."""
    slots: Tensor
    """(B, K) where each entry came from in ``cat([old set, candidates], -1)`` (to gather keys/values)."""


def merge_topk(
    best_scores: Tensor, best_indices: Tensor, new_scores: Tensor, new_indices: Tensor
) -> TopK:
    """Merge new candidates into a running top-K set.

    The full causal forward and the KV cache both grow their per-block sets through this one function
    (block by block, in the same order), which is what makes cached decoding select exactly the same
    tokens as the full forward.

    Args:
        best_scores: (B, K) float32 scores of the current set, -inf in empty slots.
        best_indices: (B, K) positions of the current set, -1 in empty slots.
        new_scores: (B, M) float32 scores of the candidates (-inf = ineligible).
        new_indices: (B, M) positions of the candidates.

    Returns:
        The top-K of the union, with -1 / -inf in empty slots.
    """
    k = best_scores.shape[-1]
    scores = torch.cat([best_scores, new_scores], dim=-1)  # (B, K + M)
    indices = torch.cat([best_indices, new_indices], dim=-1)
    values, slots = scores.topk(k, dim=-1)  # (B, K)
    return TopK(values, _empty_slots_to_minus_one(values, indices.gather(-1, slots)), slots)


def select_prefix_topk(
    scores: Tensor, k: int, window: int, key_padding_mask: Tensor | None = None, noise: float = 0.0
) -> Tensor:
    """Prefix-consistent causal selection: for each query block, the top-K among earlier blocks.

    Cost: one top-k over K + window candidates per block, O(N (1 + K / window) log) overall; the
    sets are built without any (blocks × N) tensor.

    Args:
        scores: (B, N) scorer output.
        k: number of slots K per block.
        window: block size; block b holds positions [b * window, (b + 1) * window).
        key_padding_mask: bool (B, N), True = real token, or None.
        noise: Gumbel temperature for exploration in training (:func:`selection_scores`); each token
            draws its noise once, so the sets stay prefix-consistent.

    Returns:
        LongTensor (B, ceil(N / window), K); row b holds positions < b * window (block 0: all -1).
    """
    ranked = selection_scores(scores, key_padding_mask, noise)
    batch, n = ranked.shape
    n_blocks = math.ceil(n / window)
    best_scores = ranked.new_full((batch, k), float("-inf"))
    best_indices = torch.full((batch, k), -1, dtype=torch.long, device=ranked.device)
    positions = torch.arange(n, device=ranked.device).expand(batch, n)
    sets = [best_indices]
    for block in range(1, n_blocks):
        done = slice((block - 1) * window, block * window)  # the block that just ended
        best_scores, best_indices, _ = merge_topk(
            best_scores, best_indices, ranked[:, done], positions[:, done]
        )
        sets.append(best_indices)
    return torch.stack(sets, dim=1)  # (B, n_blocks, K)


def selected_mask(global_indices: Tensor, n: int) -> Tensor:
    """Which tokens are selected in at least one set.

    Args:
        global_indices: LongTensor (B, K) or (B, G, K), -1 = empty slot.
        n: sequence length N.

    Returns:
        Bool (B, N).
    """
    flat = global_indices.reshape(global_indices.shape[0], -1)  # (B, G * K)
    member = torch.zeros(flat.shape[0], n + 1, dtype=torch.bool, device=flat.device)
    member.scatter_(1, torch.where(flat < 0, n, flat), True)  # empty slots land in column n
    return member[:, :n]


def straight_through_bias(scores: Tensor, selected: Tensor) -> Tensor:
    """Per-key logit bias that is exactly 0 in value but carries the score gate's gradient.

    ``s_j - stopgrad(s_j)`` on selected keys, 0 (no gradient) elsewhere. Add it to the attention logits
    of key j (for every query that sees j) to give the scorer a gradient without changing the forward
    output (see the module docstring).

    Args:
        scores: (B, N) scorer output (with gradient).
        selected: bool (B, N), tokens selected in some set (:func:`selected_mask`).

    Returns:
        (B, N) in float32 (float64 for float64 scores), all zeros in value.
    """
    scores = scores.to(torch.promote_types(scores.dtype, torch.float32))
    return (scores - scores.detach()) * selected
