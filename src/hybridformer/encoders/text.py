"""The BERT/RoBERTa-style text encoder built from hybridformer blocks."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from hybridformer.attention.pooled import PooledSelection
from hybridformer.blocks import TransformerBlock
from hybridformer.encoders.text_checkpoint import (
    TextCheckpoint,
    base_encoder_keys,
    load_weights,
    read_text_checkpoint,
    resolve_overrides,
)
from hybridformer.encoders.text_config import TextEncoderConfig
from hybridformer.encoders.text_embeddings import TextEmbeddings, extend_position_table
from hybridformer.initialization import allocating, init_children
from hybridformer.sparsity import GateStats
from hybridformer.validation import check_range, values_checkable

__all__ = ["TextEncoder", "TextEncoderOutput", "Pooler"]


@dataclass
class TextEncoderOutput:
    """What the text encoder returns."""

    last_hidden_state: Tensor
    """(B, N, d) tokens after the last block (and the final LayerNorm of a pre-LN stack)."""
    pooler_output: Tensor | None
    """(B, d) BERT's pooled first token (dense + tanh), None when the encoder has no pooler."""
    aux_loss: Tensor
    """Scalar sum over blocks of the FFN gates' auxiliary loss (0 when gates are off)."""
    gate_stats: list[GateStats | None]
    """Per block, the FFN gates' statistics (None when gates are off)."""
    global_indices: list[Tensor | None]
    """Per block, the tokens the attention scorer selected (None for full attention)."""


class Pooler(nn.Module):
    """BERT's pooler: dense + tanh on the first ([CLS] / <s>) token."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.dense = nn.Linear(d_model, d_model)

    def forward(self, hidden_states: Tensor) -> Tensor:
        """(B, N, d) -> (B, d)."""
        return torch.tanh(self.dense(hidden_states[:, 0]))


class TextEncoder(nn.Module):
    """Embeddings, a stack of :class:`~hybridformer.blocks.TransformerBlock`, an optional pooler.

    Built from a config for training from scratch, or loaded with :meth:`from_pretrained` from a
    Hugging Face BERT/RoBERTa folder or a folder written by ``hybridformer.registry.save_model``.

    Args:
        config: the encoder's shape, attention and FFN-gate settings.
    """

    def __init__(self, config: TextEncoderConfig) -> None:
        super().__init__()
        self.config = config
        with allocating():
            self.embeddings = TextEmbeddings(config)
            block_config = config.block_config()
            self.blocks = nn.ModuleList(TransformerBlock(block_config) for _ in range(config.n_layers))
            self.final_norm = (
                nn.LayerNorm(config.d_model, eps=config.layer_norm_eps) if config.norm == "pre" else None
            )
            self.pooler = Pooler(config.d_model) if config.pooler else None
        self.init_weights()

    def init_weights(self) -> None:
        """Initialise every parameter and buffer from the global RNG: embeddings as BERT's, blocks as
        theirs, torch's defaults for the rest (see :mod:`hybridformer.initialization`)."""
        init_children(self)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
    ) -> TextEncoderOutput:
        """Encode a batch of token ids.

        Args:
            input_ids: LongTensor (B, N) of token ids, N <= config.max_positions.
            attention_mask: (B, N) bool or 0/1 ints, True/1 = real token, False/0 = padding; None = no
                padding.
            token_type_ids: LongTensor (B, N) segment ids (0 = first text, 1 = second text of a pair);
                None = all 0.

        Returns:
            TextEncoderOutput with the (B, N, d) hidden states, the (B, d) pooled output, the summed
            gate loss, and per-block gate statistics and selected global tokens.
        """
        mask, token_type_ids = self._check_inputs(input_ids, attention_mask, token_type_ids)
        x = self.embeddings(input_ids, mask, token_type_ids)
        # Without padding, no mask: attention then takes its unmasked (faster) path. Whether a given
        # mask pads anything is only asked where reading it costs no host sync.
        key_padding_mask = None if attention_mask is None or (values_checkable(mask) and bool(mask.all())) else mask
        aux_loss = torch.zeros((), device=x.device)
        gate_stats: list[GateStats | None] = []
        global_indices: list[Tensor | None] = []
        for block in self.blocks:
            out = block(x, key_padding_mask=key_padding_mask)
            x = out.hidden_states
            aux_loss = aux_loss + out.aux_loss
            gate_stats.append(out.gate_stats)
            global_indices.append(out.global_indices)
        if self.final_norm is not None:
            x = self.final_norm(x)
        return TextEncoderOutput(
            last_hidden_state=x,
            pooler_output=self.pooler(x) if self.pooler is not None else None,
            aux_loss=aux_loss,
            gate_stats=gate_stats,
            global_indices=global_indices,
        )

    def _check_inputs(
        self, input_ids: Tensor, attention_mask: Tensor | None, token_type_ids: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """Validate the inputs; return the bool (B, N) mask and the (B, N) token types."""
        cfg = self.config
        if not isinstance(input_ids, Tensor) or input_ids.dim() != 2 or input_ids.dtype.is_floating_point:
            got = (
                f"shape {tuple(input_ids.shape)} dtype {input_ids.dtype}"
                if isinstance(input_ids, Tensor)
                else type(input_ids).__name__
            )
            raise ValueError(f"input_ids: expected an integer tensor of shape (B, N), got {got}")
        b, n = input_ids.shape
        if n == 0 or b == 0:
            raise ValueError(f"input_ids: expected a non-empty batch, got shape {(b, n)}")
        if n > cfg.max_positions:
            raise ValueError(
                f"input_ids: sequence length {n} exceeds max_positions={cfg.max_positions}; truncate the "
                f"input or extend the positions (from_pretrained(path, max_positions={n}))"
            )
        check_range(input_ids, "input_ids", cfg.vocab_size, "vocab_size")
        if attention_mask is None:
            mask = torch.ones_like(input_ids, dtype=torch.bool)
        else:
            if attention_mask.shape != input_ids.shape:
                raise ValueError(
                    f"attention_mask: expected shape {tuple(input_ids.shape)} like input_ids, "
                    f"got {tuple(attention_mask.shape)}"
                )
            mask = attention_mask.bool()
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        else:
            if token_type_ids.shape != input_ids.shape:
                raise ValueError(
                    f"token_type_ids: expected shape {tuple(input_ids.shape)} like input_ids, "
                    f"got {tuple(token_type_ids.shape)}"
                )
            check_range(token_type_ids, "token_type_ids", cfg.type_vocab_size, "type_vocab_size")
        return mask, token_type_ids

    def resize_position_embeddings(self, max_positions: int) -> None:
        """Let the encoder read up to ``max_positions`` tokens (Longformer's copy recipe).

        New rows repeat the trained ones (position p reuses row p mod the old count), so the first
        ``config.max_positions`` rows are unchanged. Shrinking drops the last rows.
        """
        cfg = self.config
        table = self.embeddings.position_embeddings
        with torch.no_grad():
            weight = extend_position_table(table.weight, cfg.position_offset, max_positions)
        new_table = nn.Embedding(weight.shape[0], cfg.d_model, device=weight.device, dtype=weight.dtype)
        new_table.weight = nn.Parameter(weight, requires_grad=table.weight.requires_grad)
        self.embeddings.position_embeddings = new_table
        self.config = dataclasses.replace(cfg, max_positions=max_positions)
        self.embeddings.config = self.config

    @classmethod
    def from_pretrained(cls, path: str | Path, **overrides: Any) -> TextEncoder:
        """Load an encoder from a local folder.

        The folder is either a Hugging Face BERT/RoBERTa checkpoint (``config.json`` and
        ``model.safetensors`` or ``pytorch_model.bin``; ``bert.``/``roberta.`` prefixes and task heads
        are handled) or one written by ``save_model`` for any hybridformer text model (its encoder
        is taken). A Hugging Face checkpoint loads with full attention and gates off, reproducing its
        outputs.

        Overrides change the config by field name; a section takes a mapping, and dotted names (as on
        the command line) work too::

            TextEncoder.from_pretrained(path, max_positions=2048,
                                        attention={"kind": "hybrid", "window": 64, "global_k": 32},
                                        sparsity={"enabled": True})
            TextEncoder.from_pretrained(path, **{"attention.kind": "hybrid", "attention.window": 64})

        Fields fixed by the weights (vocab_size, d_model, n_layers, n_heads, d_ff, ...) cannot be
        overridden; ``max_positions`` above the checkpoint's extends the position table by copying.
        Modules the checkpoint lacks (the attention scorer, the FFN gates) keep their fresh init, except
        the pooled selection's branch (``selection="pooled"``), which starts nearly closed
        (:meth:`~hybridformer.attention.pooled.PooledSelection.start_closed`): added open to a trained
        model it would change what the checkpoint computes before any step.

        Raises:
            FileNotFoundError: the folder or its files are missing.
            ValueError: unsupported model type, missing/unexpected/mis-shaped weights.
            ConfigError: an unknown or fixed field in the overrides.
        """
        return cls.from_checkpoint(read_text_checkpoint(path), **overrides)

    @classmethod
    def from_checkpoint(cls, checkpoint: TextCheckpoint, **overrides: Any) -> TextEncoder:
        """Build the encoder of an already-read folder (see :meth:`from_pretrained`)."""
        stored = checkpoint.config
        config = resolve_overrides(stored, overrides)
        encoder = cls(dataclasses.replace(config, max_positions=stored.max_positions))
        load_weights(encoder, checkpoint.encoder_state, base_encoder_keys(stored), checkpoint.source)
        for name, module in encoder.named_modules():
            if isinstance(module, PooledSelection) and f"{name}.gate_proj.weight" not in checkpoint.encoder_state:
                module.start_closed()
        if config.max_positions != stored.max_positions:
            encoder.resize_position_embeddings(config.max_positions)
        return encoder
