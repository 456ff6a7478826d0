"""Heads of the multimodal model: image classification, contrastive projections, answer classifier."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["masked_mean", "ImageClassificationHead", "ContrastiveProjection", "AnswerHead"]


def masked_mean(tokens: Tensor, mask: Tensor) -> Tensor:
    """Mean of the real tokens: (B, T, d), bool (B, T) -> (B, d); zeros for a row without any."""
    weights = mask.to(tokens.dtype).unsqueeze(-1)  # (B, T, 1)
    return (tokens * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class ImageClassificationHead(nn.Module):
    """Mean of the image tokens, LayerNorm, dropout, linear to class scores (ViT's pooled head)."""

    def __init__(self, d_model: int, num_labels: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.out_proj = nn.Linear(d_model, num_labels)

    def forward(self, tokens: Tensor, mask: Tensor) -> Tensor:
        """(B, T, d) tokens, bool (B, T) mask -> (B, num_labels) logits."""
        return self.out_proj(self.dropout(self.norm(masked_mean(tokens, mask))))


class ContrastiveProjection(nn.Module):
    """Linear map to the shared embedding space, then L2 normalisation (CLIP / ALBEF)."""

    def __init__(self, d_model: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(d_model, embed_dim, bias=False)

    def forward(self, pooled: Tensor) -> Tensor:
        """(B, d) -> (B, embed_dim) unit-norm embeddings."""
        return F.normalize(self.proj(pooled), dim=-1)


class AnswerHead(nn.Module):
    """The VQA classifier over an answer vocabulary: Linear, LayerNorm, GELU, Linear (ViLT's head)."""

    def __init__(self, d_model: int, num_answers: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(d_model, 2 * d_model),
            nn.LayerNorm(2 * d_model),
            nn.GELU(),
            nn.Linear(2 * d_model, num_answers),
        )

    def forward(self, fused: Tensor) -> Tensor:
        """(B, d) fused state -> (B, num_answers) logits."""
        return self.net(fused)
