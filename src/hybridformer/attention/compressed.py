"""NSA-style compressed-block selection: a selection signal from attention itself (SPEC §2).

Native Sparse Attention (Yuan et al., 2025) runs three branches: attention over compressed block
summaries, over the top blocks those compressed scores select, and over a sliding window, mixed by
gates. Here the window and the selected blocks are the hybrid kernel's (one softmax over
window ∪ selected, or the gated pair); this module adds the compressed branch and the block choice:

1. Compress: keys and values are pooled over blocks of ``c = compress_block`` tokens (real tokens
   only), giving ``C = ceil(N / c)`` summary keys/values per head. The pooling is a softmax over the
   block's tokens of ``pool_h · k_j`` with one learned vector per head (NSA learns its compression
   too); it starts at zero, the plain mean. A plain mean dilutes the one token that matters in a
   block: its key and its value are 1/c of the summary's, so the compressed branch's gradient
   towards that block is ~1/c² of an undiluted one's. ``compress_summary="sum"`` scales the weights
   to the block's real-token count (at zero pooling: the plain sum), so the salient token keeps its
   full weight in the summary's logit and value.
2. Compressed branch: every query attends to the summaries (causal: only to blocks that ended at or
   before it), one softmax; its output is added to the layer's, scaled per head by a sigmoid gate read
   from the token (``gate_proj``). This branch is dense over the blocks, so it learns from the main
   loss which blocks matter for every block, picked or not: no lucky pick is needed.
3. Select: for query block b (``window`` tokens) the importance of summary block c is the compressed
   attention probability combined over the block's real queries (``compress_vote``: the max, so one
   confident query — the one that needs a needle — decides; or the sum) and summed over the heads (the heads share
   one set, like NSA's GQA group). Its top ``global_k / c`` blocks (ties: the earlier block) give the
   block's set, their tokens in order, padding and positions >= N as empty slots (-1). Blocks inside
   query block b are skipped (its window already holds them).

   Causal: block b's set is chosen by the queries of block b − 1 over the blocks that end before
   b·window, a softmax over just those. Everything used lies before position b·window, so the set
   of block b — and so the output at position i — never depends on tokens after i. Non-causal:
   block b's own queries choose among every block.

Selection is hard and takes no gradient; the compressed branch's output carries it. Cost: the
compressed logits are (N × C) per head, O(N·N/c·D) time and O(N·N/c) memory, on top of the kernel's
O(N·(window + K)). Decoding: ``compressed_cache.py`` (every token's keys kept, O(N) memory as in
NSA; per token O(window + K + N/c)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hybridformer.attention.scorer import ranked_topk
from hybridformer.attention.selected import softmax_attend
from hybridformer.initialization import allocating

__all__ = [
    "CompressedSelection", "CompressedOutput", "compress_blocks", "block_importance", "combine_votes", "blocks_to_tokens"
]


@dataclass
class CompressedOutput:
    """What :class:`CompressedSelection` returns."""

    global_indices: Tensor
    """(B, ceil(N / window), K) selected token positions per query block, -1 = empty slot."""
    output: Tensor
    """(B, H, N, D) the gated compressed branch's output, to be added to the layer's."""
    importance: Tensor
    """(B, G, C) float32 block importance each query block's set was chosen by (-inf = ineligible)."""


def compress_blocks(
    k: Tensor,
    v: Tensor,
    block: int,
    key_padding_mask: Tensor | None,
    pool: Tensor | None = None,
    summary: str = "mean",
) -> tuple[Tensor, Tensor, Tensor]:
    """Pool keys and values over blocks of `block` tokens, over real tokens only.

    The weights are ``softmax_j(pool_h · k_j)`` within the block (attention pooling with one learned
    query per head); ``pool = 0`` (the initial value) is the plain mean. ``summary="sum"`` multiplies
    the weights by the block's number of real tokens (``pool = 0``: the plain sum).

    Args:
        k, v: (B, H, N, D).
        block: tokens per block c.
        key_padding_mask: bool (B, N), True = real, or None.
        pool: (H, D) pooling queries, or None for the mean.
        summary: "mean" (weights sum to 1) or "sum" (weights sum to the real-token count).

    Returns:
        (k_c, v_c, real): (B, H, C, D) each and bool (B, C) (the block holds a real token), C = ceil(N / c).
    """
    batch, heads, n, dim = k.shape
    n_blocks = math.ceil(n / block)
    real = torch.ones(batch, n, dtype=torch.bool, device=k.device)
    if key_padding_mask is not None:
        real = key_padding_mask
    real = F.pad(real, (0, n_blocks * block - n)).view(batch, 1, n_blocks, block)  # (B, 1, C, c)

    def blocks(x: Tensor) -> Tensor:
        return F.pad(x, (0, 0, 0, n_blocks * block - n)).view(batch, heads, n_blocks, block, dim)  # (B, H, C, c, D)

    k_b, v_b = blocks(k), blocks(v)
    logits = torch.zeros(batch, heads, n_blocks, block, dtype=k.dtype, device=k.device)
    if pool is not None:
        logits = torch.einsum("bhcjd,hd->bhcj", k_b, pool.to(k.dtype))  # (B, H, C, c)
    weights = torch.softmax(logits.masked_fill(~real, float("-inf")), dim=-1).nan_to_num(0.0)
    if summary == "sum":
        weights = weights * real.sum(dim=-1, keepdim=True)  # (B, H, C, c) times the real count
    weights = weights[..., None]
    return (weights * k_b).sum(dim=3), (weights * v_b).sum(dim=3), real[:, 0].any(dim=-1)


def block_importance(
    logits: Tensor,
    blocks_real: Tensor,
    key_padding_mask: Tensor | None,
    *,
    window: int,
    block: int,
    causal: bool,
    vote: str = "sum",
) -> Tensor:
    """Importance of each summary block for each query block (step 3 of the module docstring).

    Args:
        logits: (B, H, N, C) compressed attention logits (scaled q·k_c).
        blocks_real: bool (B, C).
        key_padding_mask: bool (B, N), or None; padding queries do not vote.
        window: query block size; block: summary block size (divides window).
        causal: choose block b's set from block b − 1's queries over blocks ending before b·window.
        vote: "sum" or "max" over the voting queries (:func:`combine_votes`).

    Returns:
        (B, G, C) float32, G = ceil(N / window); -inf where block c is not eligible for query block b.
    """
    batch, heads, n, n_blocks = logits.shape
    n_query_blocks = math.ceil(n / window)
    per = window // block  # summary blocks per query block
    owner = torch.arange(n_blocks, device=logits.device) // per  # (C,) the query block holding block c
    target = torch.arange(n_query_blocks, device=logits.device)[:, None]  # (G, 1)
    if causal:
        eligible = owner[None, :] < target  # (G, C): blocks that ended before b·window
        voters = target - 1  # block b is chosen by block b - 1's queries
    else:
        eligible = owner[None, :] != target  # the own window holds the rest
        voters = target
    eligible = eligible[None] & blocks_real[:, None, :]  # (B, G, C)
    padded = F.pad(logits.float(), (0, 0, 0, n_query_blocks * window - n))
    grouped = padded.view(batch, heads, n_query_blocks, window, n_blocks)  # (B, H, Gq, window, C)
    voter_logits = grouped[:, :, voters.clamp(min=0).squeeze(1)]  # (B, H, G, window, C): block b's voters
    sees = eligible[:, None, :, None, :]  # (B, 1, G, 1, C)
    probs = torch.softmax(voter_logits.masked_fill(~sees, float("-inf")), dim=-1).nan_to_num(0.0)
    votes = torch.ones(batch, n, device=logits.device)
    if key_padding_mask is not None:
        votes = key_padding_mask.float()
    votes = F.pad(votes, (0, n_query_blocks * window - n)).view(batch, n_query_blocks, window)
    votes = votes[:, voters.clamp(min=0).squeeze(1)]  # (B, G, window)
    importance = combine_votes(probs * votes[:, None, :, :, None], vote, query_dim=3)  # (B, G, C)
    return importance.masked_fill(~eligible, float("-inf"))


def combine_votes(probs: Tensor, vote: str, query_dim: int) -> Tensor:
    """A query block's importance of each summary block from its queries' probabilities (padding
    queries already zeroed): over the queries (`query_dim`) their sum or their max, then summed over
    the heads (dim 1). Shared by the full forward and cached decoding, so both rank alike."""
    per_head = probs.sum(dim=query_dim) if vote == "sum" else probs.amax(dim=query_dim)
    return per_head.sum(dim=1)


def blocks_to_tokens(importance: Tensor, n_selected: int, block: int, n: int, key_padding_mask: Tensor | None) -> Tensor:
    """Top `n_selected` blocks of each row of `importance`, expanded to their token positions.

    Args:
        importance: (B, G, C) float32, -inf = ineligible.
        n_selected: blocks per set.
        block: tokens per block.
        n: sequence length (positions >= n are empty slots).
        key_padding_mask: bool (B, N) or None (padding positions become empty slots).

    Returns:
        LongTensor (B, G, n_selected·block), -1 = empty slot.
    """
    batch, groups, n_blocks = importance.shape
    take = min(n_selected, n_blocks)
    values, chosen = ranked_topk(importance, take)  # (B, G, take)
    tokens = chosen[..., None] * block + torch.arange(block, device=importance.device)  # (B, G, take, c)
    empty = (values == float("-inf"))[..., None] | (tokens >= n)
    if key_padding_mask is not None:
        real = F.pad(key_padding_mask, (0, n_blocks * block - n))  # (B, C·c)
        empty = empty | ~real.gather(1, tokens.reshape(batch, -1)).view_as(tokens)
    tokens = tokens.masked_fill(empty, -1).reshape(batch, groups, take * block)
    if take < n_selected:
        tokens = torch.cat([tokens, tokens.new_full((batch, groups, (n_selected - take) * block), -1)], dim=-1)
    return tokens


class CompressedSelection(nn.Module):
    """The compressed branch and the compressed-block selection of one layer.

    Args:
        d_model: hidden size (the gate reads the token).
        n_heads: heads (one gate per head).
        window, block, global_k, causal: the layer's configuration (block = ``compress_block``).
        vote: ``compress_vote``, how a query block's queries combine their votes.
        summary: ``compress_summary``, "mean" or "sum" pooling (:func:`compress_blocks`).

    Submodule: `gate_proj` (d_model -> n_heads), the compressed branch's per-head gate logits;
    parameter `pool` (n_heads, head_dim), the pooling queries (zeros: the mean).
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        *,
        window: int,
        block: int,
        global_k: int,
        causal: bool,
        vote: str = "sum",
        summary: str = "mean",
    ) -> None:
        super().__init__()
        self.window, self.block, self.global_k, self.causal = window, block, global_k, causal
        self.vote, self.summary = vote, summary
        with allocating():
            self.gate_proj = nn.Linear(d_model, n_heads)
        self.pool = nn.Parameter(torch.zeros(n_heads, d_model // n_heads))
        self.init_weights()

    def init_weights(self) -> None:
        """nn.Linear's defaults for the gate; the pooling queries at zero (mean pooling)."""
        self.gate_proj.reset_parameters()
        with torch.no_grad():
            self.pool.zero_()

    def forward(
        self, hidden_states: Tensor, q: Tensor, k: Tensor, v: Tensor, key_padding_mask: Tensor | None, scale: float
    ) -> CompressedOutput:
        """Compressed branch and per-block selection.

        Args:
            hidden_states: (B, N, d_model) (for the gate).
            q, k, v: (B, H, N, D) the layer's projections.
            key_padding_mask: bool (B, N), True = real, or None.
            scale: logit scale.

        Returns:
            :class:`CompressedOutput`.
        """
        batch, _, n, _ = q.shape
        k_c, v_c, blocks_real = compress_blocks(k, v, self.block, key_padding_mask, self.pool, self.summary)
        logits = (q @ k_c.transpose(-1, -2)) * scale  # (B, H, N, C)
        sees = blocks_real[:, None, None, :]  # (B, 1, 1, C)
        if self.causal:
            ends = (torch.arange(k_c.shape[2], device=q.device) + 1) * self.block - 1  # last position of block c
            sees = sees & (ends[None, :] <= torch.arange(n, device=q.device)[:, None])  # (B, 1, N, C)
        out = softmax_attend(logits, sees, v_c)  # (B, H, N, D)
        gates = torch.sigmoid(self.gate_proj(hidden_states)).view(batch, n, -1, 1).transpose(1, 2)  # (B, H, N, 1)
        with torch.no_grad():
            importance = block_importance(
                logits.detach(), blocks_real, key_padding_mask, window=self.window, block=self.block, causal=self.causal,
                vote=self.vote,
            )
            indices = blocks_to_tokens(importance, self.global_k // self.block, self.block, n, key_padding_mask)
        return CompressedOutput(indices, gates * out, importance)
