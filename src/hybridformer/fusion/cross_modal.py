"""Gated cross-modal attention: decoder tokens attend to every present modality at once (SPEC §4).

- One query projection for the decoder tokens, shared by all modalities.
- A key and a value projection per modality (text context, image, video), each from that modality's
  own width, so encoders of different widths plug in without an adapter.
- A learned type embedding per modality, added to its tokens before the projections, so a key says
  which modality it comes from even where two encoders' features look alike.
- The present modalities' keys/values are concatenated along the token axis with one key mask
  (B, T_text + T_image + T_video), and one softmax runs over the concatenation (the dense/cross
  attention path): modalities compete for a query's attention instead of being summed. A batch can
  mix text-only, image+text and video+text examples; each example attends only to what it has.
- The update is multiplied by ``tanh(gate)``, the scalar gate starting at 0 (Flamingo's gated
  cross-attention, Alayrac et al. 2022): at initialisation the layer adds exactly zero, so a pretrained
  text path is undisturbed, and the gate opens as training finds the other modalities useful. An example
  with no context token at all gets exactly zero update whatever the gate.

Keys and values depend on the context only, never on the decoder tokens, so :meth:`project` computes
them once per input (:class:`CrossModalKV`) and generation reuses them at every step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hybridformer.attention.dense import dense_attention
from hybridformer.config import check
from hybridformer.fusion.batched_decode import linear_of
from hybridformer.initialization import allocating

__all__ = [
    "MODALITIES", "CrossModalConfig", "ModalityTokens", "CrossModalKV", "CrossModalAttention", "CrossStep", "stack_kv",
]

MODALITIES: tuple[str, ...] = ("text", "image", "video")
"""The context modalities, in the order their keys are concatenated."""


@dataclass
class CrossModalConfig:
    """Shape of one gated cross-modal attention layer."""

    d_model: int = 512
    """Width of the decoder tokens (the queries) and of the attention."""
    n_heads: int = 8
    """Attention heads; must divide d_model."""
    text_dim: int = 0
    """Width of the text-context tokens (the text encoder's hidden size); 0 = no text modality."""
    image_dim: int = 0
    """Width of the image tokens (the image encoder's d_model); 0 = no image modality."""
    video_dim: int = 0
    """Width of the video tokens (the video encoder's d_model); 0 = no video modality."""
    dropout: float = 0.0
    """Dropout on the attention probabilities (training only)."""

    def __post_init__(self) -> None:
        check(self.d_model >= 1, "d_model", f"must be >= 1, got {self.d_model}")
        check(self.n_heads >= 1 and self.d_model % self.n_heads == 0, "n_heads",
              f"must be >= 1 and divide d_model={self.d_model}, got {self.n_heads}")
        for name in ("text_dim", "image_dim", "video_dim"):
            check(getattr(self, name) >= 0, name, f"must be >= 0, got {getattr(self, name)}")
        check(0.0 <= self.dropout < 1.0, "dropout", f"must be in [0, 1), got {self.dropout}")

    @property
    def dims(self) -> dict[str, int]:
        """Width of each modality the layer reads, in concatenation order."""
        widths = {"text": self.text_dim, "image": self.image_dim, "video": self.video_dim}
        return {m: widths[m] for m in MODALITIES if widths[m] > 0}


@dataclass
class ModalityTokens:
    """One modality's tokens for a batch; an example without the modality has an all-False mask row."""

    tokens: Tensor
    """(B, T, dim) the encoder's output tokens."""
    mask: Tensor
    """Bool (B, T), True = a real token."""


@dataclass
class CrossModalKV:
    """The projected keys and values of one layer for a batch, computed once per input."""

    keys: Tensor
    """(B, H, T, D) keys of every present modality, concatenated in :data:`MODALITIES` order."""
    values: Tensor
    """(B, H, T, D) their values."""
    mask: Tensor
    """Bool (B, T), True = a real context token."""

    def row(self, index: int) -> CrossModalKV | None:
        """Example ``index`` alone, only its real tokens kept ((1, H, T_i, D)); None if it has none.

        Attention over a set of keys does not depend on their order or on masked-out keys, so the
        trimmed row attends exactly as it did inside the batch.
        """
        real = self.mask[index]  # (T,)
        if not bool(real.any()):
            return None
        return CrossModalKV(self.keys[index : index + 1, :, real], self.values[index : index + 1, :, real],
                            self.mask[index : index + 1, real])

    def select(self, index: Tensor) -> CrossModalKV:
        """The rows ``index`` (LongTensor (B',)), e.g. to follow the beams of beam search."""
        return CrossModalKV(self.keys[index], self.values[index], self.mask[index])


@dataclass
class CrossStep:
    """One layer's context prepared once for the decode steps of a batch (:meth:`CrossModalAttention.prepare_step`)."""

    keys: Tensor
    """(B, H, T, D) the context keys."""
    values: Tensor
    """(B, H, T, D) their values."""
    attn_mask: Tensor
    """(B, 1, 1, T) additive mask, 0 where the query sees the key, -inf elsewhere (SDPA would convert a
    bool mask at every step); a row without context sees every key (finite, then zeroed)."""
    factor: Tensor
    """(B, 1) ``tanh(gate)`` for a row with context, 0 without."""


def stack_kv(rows: Sequence[CrossModalKV | None]) -> CrossModalKV | None:
    """Stack single-example key/value sets (of different lengths, some None) into one padded batch.

    Returns None when no row has context (the layer is then skipped for the whole batch).
    """
    present = [r for r in rows if r is not None]
    if not present:
        return None
    heads, dim = present[0].keys.shape[1], present[0].keys.shape[3]
    length = max(r.keys.shape[2] for r in present)
    like = present[0].keys
    keys = like.new_zeros(len(rows), heads, length, dim)  # (B, H, T_max, D)
    values = like.new_zeros(len(rows), heads, length, dim)
    mask = torch.zeros(len(rows), length, dtype=torch.bool, device=like.device)
    for i, r in enumerate(rows):
        if r is not None:
            n = r.keys.shape[2]
            keys[i, :, :n], values[i, :, :n], mask[i, :n] = r.keys[0], r.values[0], r.mask[0]
    return CrossModalKV(keys, values, mask)


class CrossModalAttention(nn.Module):
    """Gated multi-head attention of decoder tokens over the concatenated context of all modalities.

    Submodules: ``q_proj`` and ``o_proj`` (d_model -> d_model), ``k_proj[m]`` and ``v_proj[m]``
    (dim_m -> d_model) and ``type_embeddings[m]`` (dim_m,) for each modality m of ``config.dims``, and
    the scalar ``gate`` (0 at init).

    Args:
        config: the layer's :class:`CrossModalConfig`; it must read at least one modality.
    """

    def __init__(self, config: CrossModalConfig) -> None:
        super().__init__()
        dims = config.dims
        check(bool(dims), "text_dim", "a cross-modal layer needs at least one modality width > 0 "
              "(text_dim, image_dim or video_dim)")
        self.config = config
        d = config.d_model
        with allocating():
            self.q_proj = nn.Linear(d, d)
            self.k_proj = nn.ModuleDict({m: nn.Linear(dim, d) for m, dim in dims.items()})
            self.v_proj = nn.ModuleDict({m: nn.Linear(dim, d) for m, dim in dims.items()})
            self.type_embeddings = nn.ParameterDict({m: nn.Parameter(torch.empty(dim)) for m, dim in dims.items()})
            self.o_proj = nn.Linear(d, d)
            self.gate = nn.Parameter(torch.empty(()))
        self.init_weights()

    def init_weights(self) -> None:
        """torch's default Linear init, N(0, 0.02) type embeddings, and the gate at exactly 0."""
        for layer in (self.q_proj, self.o_proj, *self.k_proj.values(), *self.v_proj.values()):
            layer.reset_parameters()
        with torch.no_grad():
            for embedding in self.type_embeddings.values():
                nn.init.normal_(embedding, std=0.02)
            nn.init.zeros_(self.gate)

    def _split_heads(self, x: Tensor) -> Tensor:
        batch, n, _ = x.shape
        return x.view(batch, n, -1, self.config.d_model // self.config.n_heads).transpose(1, 2)  # (B, H, N, D)

    def project(self, context: Mapping[str, ModalityTokens]) -> CrossModalKV | None:
        """Keys and values of the context, once per input.

        Args:
            context: modality name -> its :class:`ModalityTokens`, for the modalities the batch has
                (any subset of the layer's; an absent modality may also be left out).

        Returns:
            :class:`CrossModalKV` over the concatenated modalities, or None if ``context`` is empty.

        Raises:
            ValueError: an unknown modality, a width or batch size that does not match, a non-bool mask.
        """
        keys, values, masks = [], [], []
        batch = None
        for name in context:
            if name not in self.k_proj:
                raise ValueError(f"context: this layer reads {sorted(self.k_proj)}, got modality {name!r}")
        for name in MODALITIES:
            if name not in context:
                continue
            part = context[name]
            self._check_part(name, part, batch)
            batch = part.tokens.shape[0]
            x = part.tokens + self.type_embeddings[name]  # (B, T, dim)
            keys.append(self._split_heads(self.k_proj[name](x)))
            values.append(self._split_heads(self.v_proj[name](x)))
            masks.append(part.mask)
        if not keys:
            return None
        return CrossModalKV(torch.cat(keys, dim=2), torch.cat(values, dim=2), torch.cat(masks, dim=1))

    def _check_part(self, name: str, part: ModalityTokens, batch: int | None) -> None:
        dim = self.config.dims[name]
        tokens, mask = part.tokens, part.mask
        if tokens.dim() != 3 or tokens.shape[-1] != dim:
            raise ValueError(f"context[{name!r}].tokens: expected shape (B, T, {dim}), got {tuple(tokens.shape)}")
        if batch is not None and tokens.shape[0] != batch:
            raise ValueError(f"context[{name!r}].tokens: batch size {tokens.shape[0]}, other modalities have {batch}")
        if mask.dtype != torch.bool or tuple(mask.shape) != tuple(tokens.shape[:2]):
            raise ValueError(f"context[{name!r}].mask: expected a bool tensor of shape {tuple(tokens.shape[:2])}, "
                             f"got {mask.dtype} {tuple(mask.shape)}")

    def prepare_step(self, kv: CrossModalKV) -> CrossStep:
        """What :meth:`attend_step` needs of ``kv``, computed once per decode batch (the gate and the
        masks do not change between steps)."""
        has_context = kv.mask.any(dim=1)  # (B,)
        sees = (kv.mask | ~has_context[:, None])[:, None, None, :]  # (B, 1, 1, T)
        attn_mask = torch.zeros(sees.shape, dtype=kv.keys.dtype, device=sees.device).masked_fill(~sees, float("-inf"))
        factor = (torch.tanh(self.gate) * has_context)[:, None].detach()  # (B, 1)
        return CrossStep(kv.keys, kv.values, attn_mask, factor)

    def attend_step(self, hidden_states: Tensor, step: CrossStep) -> Tensor:
        """:meth:`forward` for a decode step, on a prepared context: (B, d_model), one token per
        sequence -> the gated update (B, d_model)."""
        batch, d = hidden_states.shape
        # functional calls on the layers' weights: a module call's Python costs as much as a small matmul
        q = linear_of(self.q_proj, hidden_states).view(batch, self.config.n_heads, 1, -1)
        out = F.scaled_dot_product_attention(q, step.keys, step.values, attn_mask=step.attn_mask)  # (B, H, 1, D)
        return linear_of(self.o_proj, out.reshape(batch, d)) * step.factor  # (B, d)

    def forward(self, hidden_states: Tensor, kv: CrossModalKV | None) -> Tensor:
        """The gated update of the decoder tokens (to be added to the residual stream).

        Args:
            hidden_states: (B, N, d_model) (normalised) decoder tokens.
            kv: the context's :class:`CrossModalKV` for the same B examples, or None (no context).

        Returns:
            (B, N, d_model) ``tanh(gate) * o_proj(attention)``; exactly zero for an example without
            context (and for every example when ``kv`` is None).
        """
        if kv is None:
            return torch.zeros_like(hidden_states)
        batch, n, _ = hidden_states.shape
        if kv.keys.shape[0] != batch:
            raise ValueError(f"kv: holds {kv.keys.shape[0]} examples, hidden_states has {batch}")
        q = self._split_heads(self.q_proj(hidden_states))  # (B, H, N, D)
        dropout = self.config.dropout if self.training else 0.0
        out = dense_attention(q, kv.keys, kv.values, key_padding_mask=kv.mask, dropout_p=dropout)  # (B, H, N, D)
        out = self.o_proj(out.transpose(1, 2).reshape(batch, n, -1))  # (B, N, d_model)
        # o_proj's bias would move an example that saw nothing: keep its update exactly zero.
        has_context = kv.mask.any(dim=1)[:, None, None]  # (B, 1, 1)
        return torch.tanh(self.gate) * out * has_context
