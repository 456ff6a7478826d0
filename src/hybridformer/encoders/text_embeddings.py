"""Token embeddings of the text encoder: word + position + token type, LayerNorm, dropout."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hybridformer.encoders.text_config import TextEncoderConfig

__all__ = ["TextEmbeddings", "extend_position_table"]


class TextEmbeddings(nn.Module):
    """BERT/RoBERTa input embeddings.

    Positions are numbered BERT-style (0, 1, 2, ... for every token) when ``position_offset == 0``, and
    RoBERTa-style otherwise: real tokens count from ``position_offset``, padding takes the row just
    before it. Counting only real tokens keeps left-padded inputs at the positions they were trained with.
    """

    def __init__(self, config: TextEncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.word_embeddings = nn.Embedding(config.vocab_size, config.d_model, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.position_rows, config.d_model)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.d_model)
        self.norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)

    def init_weights(self) -> None:
        """BERT's initialisation: tables N(0, 0.02) (torch's N(0, 1) would make the embeddings dominate
        the residual stream of a fresh model), a zero padding row, a unit LayerNorm."""
        for table in (self.word_embeddings, self.position_embeddings, self.token_type_embeddings):
            nn.init.normal_(table.weight, std=0.02)
        with torch.no_grad():
            self.word_embeddings.weight[self.config.pad_token_id].zero_()
        self.norm.reset_parameters()

    def position_ids(self, attention_mask: Tensor) -> Tensor:
        """Position row of every token.

        Args:
            attention_mask: bool (B, N), True = real token.

        Returns:
            LongTensor (B, N) of rows of ``position_embeddings``.
        """
        if self.config.position_offset == 0:
            n = attention_mask.shape[1]
            return torch.arange(n, device=attention_mask.device).expand_as(attention_mask)
        real = attention_mask.long()
        # (B, N): 1, 2, 3... over real tokens, 0 on padding, then shifted so padding lands on offset - 1.
        return torch.cumsum(real, dim=1) * real + (self.config.position_offset - 1)

    def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor) -> Tensor:
        """Embed tokens.

        Args:
            input_ids: LongTensor (B, N).
            attention_mask: bool (B, N), True = real token.
            token_type_ids: LongTensor (B, N) segment ids (0 for the first text of a pair, 1 for the second).

        Returns:
            (B, N, d) embedded tokens.
        """
        x = (
            self.word_embeddings(input_ids)
            + self.position_embeddings(self.position_ids(attention_mask))
            + self.token_type_embeddings(token_type_ids)
        )
        return self.dropout(self.norm(x))


def extend_position_table(table: Tensor, offset: int, max_positions: int) -> Tensor:
    """Resize a position-embedding table to ``offset + max_positions`` rows (the Longformer recipe).

    The first ``offset`` (special) rows are kept; the trained position rows are repeated one after the
    other until ``max_positions`` are filled, so position p of a longer input reuses row p mod N_old and
    the first N_old rows stay exactly the trained ones. Shrinking keeps the first rows.

    Args:
        table: (offset + N_old, d) trained rows.
        offset: number of rows before the first real position.
        max_positions: positions wanted after the offset.

    Returns:
        (offset + max_positions, d) new table.
    """
    trained = table[offset:]  # (N_old, d)
    repeats = -(-max_positions // trained.shape[0])
    tiled = trained.repeat(repeats, 1)[:max_positions]  # (max_positions, d)
    return torch.cat([table[:offset], tiled], dim=0)
