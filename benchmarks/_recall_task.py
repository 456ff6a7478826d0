"""The long-range recall task and its model (benchmarks/recall.py): data, positions, variants.

Task (keyed needle retrieval, a one-hop associative recall): a sequence of N tokens, filler tokens
(32 kinds) everywhere except four *pair* tokens, each carrying a key (of 16) and a value (of 16),
the keys distinct, at random positions in the first three quarters; the last token is the *query*,
carrying one of the four keys. The model classifies the query's value from its output (16 classes,
chance 1/16). Token embedding = kind + filler id + key + value embeddings (zero where absent), plus
sinusoidal positions (``positions="sinusoidal"``) or none (``"none"``, the 512-trained protocol).

Local attention provably cannot beat chance: with ``local="block"`` a token only ever reads its own
block of `window` tokens, in every layer, and every pair lies >= N/4 - window tokens before the
query's block. So whatever crosses must go through the global selection.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from hybridformer.attention import AttentionConfig, HybridAttention

D, HEADS, LAYERS, WINDOW, K, BLOCK = 64, 4, 1, 64, 16, 16
FILLERS, KEYS, VALUES, PAIRS = 32, 16, 16, 4
VARIANTS = ["local", "learned-scorer", "learned-compressed", "learned-compressed-b4", "learned-pooled", "oracle", "full"]
POSITIONS = ["sinusoidal", "none"]


def make_batch(generator: torch.Generator, batch: int, n: int) -> dict[str, Tensor]:
    """Token fields (kind 0 filler / 1 pair / 2 query; filler, key, value ids with -1 = absent), the
    label and the needed position (the queried pair's)."""
    kind = torch.zeros(batch, n, dtype=torch.long)
    filler = torch.randint(0, FILLERS, (batch, n), generator=generator)
    key = torch.full((batch, n), -1, dtype=torch.long)
    value = torch.full((batch, n), -1, dtype=torch.long)
    rows = torch.arange(batch)[:, None]
    pos = torch.rand(batch, 3 * n // 4, generator=generator).argsort(-1)[:, :PAIRS]  # (B, P) distinct
    keys = torch.rand(batch, KEYS, generator=generator).argsort(-1)[:, :PAIRS]  # distinct keys
    values = torch.randint(0, VALUES, (batch, PAIRS), generator=generator)
    kind[rows, pos], key[rows, pos], value[rows, pos], filler[rows, pos] = 1, keys, values, -1
    which = torch.randint(0, PAIRS, (batch,), generator=generator)
    b = torch.arange(batch)
    kind[:, -1], filler[:, -1], key[:, -1] = 2, -1, keys[b, which]
    return dict(kind=kind, filler=filler, key=key, value=value, label=values[b, which], needed=pos[b, which])


def sinusoidal_positions(n: int, dim: int) -> Tensor:
    """(N, dim) the Transformer's fixed sinusoids: sin/cos of pos / 10000^(2i/dim). No parameters and
    defined at every length, so one model can be trained at one N and read at another."""
    position = torch.arange(n, dtype=torch.float32)[:, None]  # (N, 1)
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))  # (dim/2,)
    table = torch.zeros(n, dim)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)
    return table


class Block(nn.Module):
    def __init__(self, attention: AttentionConfig) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(D), nn.LayerNorm(D)
        self.attention = HybridAttention(attention)
        self.ffn = nn.Sequential(nn.Linear(D, 2 * D), nn.GELU(), nn.Linear(2 * D, D))

    def forward(self, x: Tensor, global_indices: Tensor | None):
        out = self.attention(self.norm1(x), global_indices=global_indices)
        x = x + out.hidden_states
        return x + self.ffn(self.norm2(x)), out.global_indices


class RecallModel(nn.Module):
    def __init__(self, attention: AttentionConfig, positions: str = "sinusoidal") -> None:
        super().__init__()
        self.positions = positions
        self.kind = nn.Embedding(3, D)
        self.filler = nn.Embedding(FILLERS + 1, D, padding_idx=FILLERS)  # id FILLERS = absent
        self.key = nn.Embedding(KEYS + 1, D, padding_idx=KEYS)
        self.value = nn.Embedding(VALUES + 1, D, padding_idx=VALUES)
        self.blocks = nn.ModuleList(Block(attention) for _ in range(LAYERS))
        self.norm = nn.LayerNorm(D)
        self.head = nn.Linear(D, VALUES)

    def forward(self, batch: dict[str, Tensor], global_indices: Tensor | None = None):
        absent = lambda ids, size: torch.where(ids < 0, size, ids)  # noqa: E731
        x = (
            self.kind(batch["kind"])
            + self.filler(absent(batch["filler"], FILLERS))
            + self.key(absent(batch["key"], KEYS))
            + self.value(absent(batch["value"], VALUES))
        )
        if self.positions == "sinusoidal":
            x = x + sinusoidal_positions(x.shape[1], D)
        sets = []
        for block in self.blocks:
            x, chosen = block(x, global_indices)
            sets.append(chosen)
        return self.head(self.norm(x[:, -1])), sets


def attention_config(variant: str) -> AttentionConfig:
    common = dict(d_model=D, n_heads=HEADS, window=WINDOW, global_k=K)
    if variant == "local":
        return AttentionConfig(kind="local", **common)
    if variant == "full":
        return AttentionConfig(kind="full", **common)
    if variant.startswith("learned-compressed"):
        block = 4 if "-b4" in variant else BLOCK  # blocks of 4: 4 blocks per set
        return AttentionConfig(
            kind="hybrid", selection="compressed", compress_block=block, compress_vote="max", compress_summary="sum", **common
        )
    if variant == "learned-pooled":
        return AttentionConfig(kind="hybrid", selection="pooled", **common)
    return AttentionConfig(kind="hybrid", selection="scorer", **common)  # learned-scorer, oracle


def oracle_indices(batch: dict[str, Tensor]) -> Tensor:
    """(B, K): the needed position, the other slots empty."""
    sets = torch.full((batch["needed"].shape[0], K), -1, dtype=torch.long)
    sets[:, 0] = batch["needed"]
    return sets


def found(sets: list[Tensor | None], needed: Tensor) -> Tensor:
    """Bool (B,): the needed position is in the set the query's (last) block sees, in some layer."""
    hit = torch.zeros(needed.shape[0], dtype=torch.bool)
    for chosen in sets:
        if chosen is not None:
            last = chosen if chosen.dim() == 2 else chosen[:, -1]  # (B, K)
            hit |= (last == needed[:, None]).any(-1)
    return hit
