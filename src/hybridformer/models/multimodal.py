"""The multimodal model: text, image and video encoders, the joint decoder, and the task heads.

Built from ready modules (torchmultimodal's style)::

    model = MultimodalModel(text_encoder, decoder, image_encoder=..., video_encoder=..., heads=HeadsConfig(...))

or from a flavor (``multimodal_tiny()``, ``multimodal_base()`` in ``multimodal_flavors.py``) or a saved
folder (:meth:`MultimodalModel.from_pretrained`). What each entry point computes:

- ``model(input_ids, ..., images=..., videos=..., context_ids=...)``: the joint decoder over the text,
  cross-attending to the context -> next-token logits (captioning, answers), the fused state, image-text
  matching and VQA answer scores (:class:`MultimodalOutput`).
- :meth:`contrastive`: unit-norm text and image embeddings for ITC.
- :meth:`classify_text`, :meth:`classify_image`: unimodal heads.
- :meth:`generate`, and :meth:`prefill` + :meth:`decode_batch` for a server's continuous batching.

A batch may mix examples with and without each modality: ``image_mask`` / ``video_mask`` (B,) say which
examples have one (the encoder runs on those only), and ``context_mask`` pads the text context. No loss
is computed here (``losses/``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from hybridformer.encoders.image import ImageEncoder
from hybridformer.encoders.text import TextEncoder
from hybridformer.encoders.video import VideoEncoder
from hybridformer.fusion import CrossModalKV, JointDecoder, ModalityTokens
from hybridformer.models.decoding import DecodeBatch, SequenceState, prefill
from hybridformer.models.generate import GenerateOutput, GenerationConfig, generate_tokens, prompts_of
from hybridformer.initialization import init_children
from hybridformer.models.multimodal_config import HeadsConfig, MultimodalConfig
from hybridformer.models.multimodal_heads import AnswerHead, ContrastiveProjection, ImageClassificationHead, masked_mean
from hybridformer.models.outputs import ClassifierOutput, ContrastiveOutput, MultimodalOutput
from hybridformer.models.text_classifier import SequenceClassificationHead

__all__ = ["MultimodalModel", "CONTEXT_KEYS"]

CONTEXT_KEYS = ("images", "image_mask", "videos", "video_mask", "context_ids", "context_mask")
"""The keyword inputs :meth:`MultimodalModel.encode_context` takes."""


class MultimodalModel(nn.Module):
    """Encoders + joint decoder + heads.

    Args:
        text_encoder: the :class:`TextEncoder` (e.g. ``TextEncoder.from_pretrained(minilm_path())``).
        decoder: the :class:`JointDecoder`; its modality widths must match the encoders.
        image_encoder: an :class:`ImageEncoder`, or None.
        video_encoder: a :class:`VideoEncoder`, or None.
        heads: which heads to build (:class:`HeadsConfig`).
    """

    def __init__(
        self,
        text_encoder: TextEncoder,
        decoder: JointDecoder,
        *,
        image_encoder: ImageEncoder | None = None,
        video_encoder: VideoEncoder | None = None,
        heads: HeadsConfig | None = None,
    ) -> None:
        super().__init__()
        heads = heads or HeadsConfig()
        self.heads_config = heads
        self.text_encoder = text_encoder
        self.image_encoder = image_encoder
        self.video_encoder = video_encoder
        self.decoder = decoder
        _ = self.config  # building it checks that the parts fit together (vocabulary, modality widths)
        text_d, dec_d = text_encoder.config.d_model, decoder.config.d_model
        self.text_projection = ContrastiveProjection(text_d, heads.embed_dim)
        self.image_projection = (
            ContrastiveProjection(image_encoder.config.d_model, heads.embed_dim) if image_encoder is not None else None
        )
        self.itm_head = nn.Linear(dec_d, 2)
        self.answer_head = AnswerHead(dec_d, heads.num_answers, heads.dropout) if heads.num_answers else None
        self.text_head = (
            SequenceClassificationHead(text_d, heads.num_text_labels, heads.dropout) if heads.num_text_labels else None
        )
        self.image_head = (
            ImageClassificationHead(image_encoder.config.d_model, heads.num_image_labels, heads.dropout)
            if heads.num_image_labels and image_encoder is not None
            else None
        )

    @property
    def config(self) -> MultimodalConfig:
        """The configuration of every part (what :meth:`save_pretrained` writes)."""
        return MultimodalConfig(
            text=self.text_encoder.config, decoder=self.decoder.config, heads=self.heads_config,
            image=self.image_encoder.config if self.image_encoder is not None else None,
            video=self.video_encoder.config if self.video_encoder is not None else None,
        )

    def init_weights(self) -> None:
        """Initialise every part in place, in registration order: the encoders (text, image, video),
        the decoder, then the heads (see :mod:`hybridformer.initialization`)."""
        init_children(self)

    # ----- encoders ---------------------------------------------------------------------------

    def _encode_visual(self, name: str, encoder: nn.Module | None, pixels: Tensor, present: Tensor | None) -> ModalityTokens:
        """Run ``encoder`` on the examples that have modality ``name`` (image, video); absent ones get
        all-False masks."""
        if encoder is None:
            raise ValueError(f"{name}s: this model has no {name} encoder")
        if not getattr(self.config.decoder, f"{name}_dim"):
            raise ValueError(f"{name}s: this model's decoder does not read {name}s (decoder.{name}_dim=0)")
        batch = pixels.shape[0]
        if present is None:
            present = torch.ones(batch, dtype=torch.bool, device=pixels.device)
        if present.dtype != torch.bool or tuple(present.shape) != (batch,):
            raise ValueError(f"{name}_mask: expected a bool tensor of shape ({batch},), got "
                             f"{present.dtype} {tuple(present.shape)}")
        out = encoder(pixels[present])
        tokens = out.tokens.new_zeros(batch, *out.tokens.shape[1:])  # (B, T, d)
        mask = torch.zeros(batch, out.tokens.shape[1], dtype=torch.bool, device=pixels.device)
        tokens[present], mask[present] = out.tokens, out.mask
        return ModalityTokens(tokens, mask)

    def encode_context(
        self,
        *,
        images: Tensor | None = None,
        image_mask: Tensor | None = None,
        videos: Tensor | None = None,
        video_mask: Tensor | None = None,
        context_ids: Tensor | None = None,
        context_mask: Tensor | None = None,
    ) -> dict[str, ModalityTokens]:
        """The context the decoder cross-attends to, per modality.

        Args:
            images: float (B, C, H, W); the rows where ``image_mask`` is False are ignored.
            image_mask: bool (B,), True = the example has an image; None = all have one.
            videos: float (B, C, T, H, W) clips; ``video_mask`` as for images.
            context_ids: LongTensor (B, N) text context (e.g. a question) for the text encoder.
            context_mask: (B, N) bool or 0/1, True = real token; an all-False row = no text context.
        """
        context: dict[str, ModalityTokens] = {}
        if context_ids is not None:
            if self.config.decoder.text_dim == 0:
                raise ValueError("context_ids: this model's decoder does not read a text context (decoder.text_dim=0)")
            mask = torch.ones_like(context_ids, dtype=torch.bool) if context_mask is None else context_mask.bool()
            # A row without context still runs through the encoder (one real token), then is masked out.
            run_mask = mask.clone()
            run_mask[~mask.any(dim=1), 0] = True
            hidden = self.text_encoder(context_ids, attention_mask=run_mask).last_hidden_state
            context["text"] = ModalityTokens(hidden, mask)
        if images is not None:
            context["image"] = self._encode_visual("image", self.image_encoder, images, image_mask)
        if videos is not None:
            context["video"] = self._encode_visual("video", self.video_encoder, videos, video_mask)
        return context

    # ----- the joint decoder ------------------------------------------------------------------

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        **context: Tensor | None,
    ) -> MultimodalOutput:
        """Joint decoder pass over right-padded text, cross-attending to the context.

        Args:
            input_ids: LongTensor (B, N) decoder tokens (e.g. [CLS] caption [SEP]), right-padded.
            attention_mask: (B, N) bool or 0/1, True = real; None = no padding.
            **context: ``images``, ``image_mask``, ``videos``, ``video_mask``, ``context_ids``,
                ``context_mask`` as in :meth:`encode_context`.

        Returns:
            :class:`MultimodalOutput`.
        """
        ctx = self.encode_context(**context)
        mask = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
        out = self.decoder(input_ids, attention_mask=mask, kv=self.decoder.cross_kv(ctx))
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        last = (mask * positions).argmax(dim=1)  # (B,) each row's last real token
        fused = out.hidden_states[torch.arange(input_ids.shape[0], device=input_ids.device), last]  # (B, d)
        return MultimodalOutput(
            logits=out.logits,
            fused=fused,
            itm_logits=self.itm_head(fused),
            answer_logits=self.answer_head(fused) if self.answer_head is not None else None,
            aux_loss=out.aux_loss,
            gate_stats=out.gate_stats,
        )

    # ----- unimodal heads ---------------------------------------------------------------------

    def contrastive(
        self, input_ids: Tensor | None = None, attention_mask: Tensor | None = None, images: Tensor | None = None
    ) -> ContrastiveOutput:
        """Unit-norm text embeddings (from the text encoder's first token) and image embeddings (from
        the mean image token) for image-text contrastive learning."""
        text = image = None
        if input_ids is not None:
            hidden = self.text_encoder(input_ids, attention_mask=attention_mask).last_hidden_state
            text = self.text_projection(hidden[:, 0])
        if images is not None:
            if self.image_encoder is None:
                raise ValueError("images: this model has no image encoder")
            out = self.image_encoder(images)
            image = self.image_projection(masked_mean(out.tokens, out.mask))
        if text is None and image is None:
            raise ValueError("contrastive: give input_ids (text), images, or both")
        return ContrastiveOutput(text_embeddings=text, image_embeddings=image)

    def classify_text(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None
    ) -> ClassifierOutput:
        """Sequence classification on the text encoder."""
        if self.text_head is None:
            raise ValueError("classify_text: the model has no text head (heads.num_text_labels=0)")
        enc = self.text_encoder(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        mask = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
        return ClassifierOutput(self.text_head(enc.last_hidden_state, mask), enc.aux_loss, enc.gate_stats)

    def classify_image(self, images: Tensor) -> ClassifierOutput:
        """Image classification on the pooled image tokens."""
        if self.image_head is None:
            raise ValueError("classify_image: the model has no image head (heads.num_image_labels=0 or no image encoder)")
        out = self.image_encoder(images)
        return ClassifierOutput(self.image_head(out.tokens, out.mask), out.tokens.new_zeros(()), [])

    # ----- generation -------------------------------------------------------------------------

    def _context_rows(
        self, context: dict[str, Any], n_prompts: int | None
    ) -> tuple[int, list[list[CrossModalKV | None]]]:
        """Encode the context once; (batch size, each example's per-block cross-attention keys/values).

        With no context the batch size is ``n_prompts`` and every example's keys/values are None.
        """
        unknown = sorted(set(context) - set(CONTEXT_KEYS))
        if unknown:
            raise ValueError(f"{unknown[0]}: not a context input (known: {', '.join(CONTEXT_KEYS)})")
        ctx = self.encode_context(**context)
        kv = self.decoder.cross_kv(ctx)
        batch = next((part.tokens.shape[0] for part in ctx.values()), None)
        if batch is None:
            if n_prompts is None:
                raise ValueError("input_ids: give prompts, or a context (images, videos, context_ids) to caption")
            return n_prompts, [[None] * len(self.decoder.blocks) for _ in range(n_prompts)]
        if n_prompts is not None and n_prompts != batch:
            raise ValueError(f"input_ids: {n_prompts} prompts for a context of {batch} examples")
        return batch, [[None if layer is None else layer.row(i) for layer in kv] for i in range(batch)]

    @torch.no_grad()
    def prefill(
        self, prompts: Sequence[Tensor], *, use_cache: bool = True, **context: Tensor | None
    ) -> tuple[list[SequenceState], Tensor]:
        """Encode the context once and run the prompts: one :class:`SequenceState` per example (its
        caches and cross-attention keys/values) and the next-token logits (B, vocab_size). Continue
        with :meth:`decode_batch`; see ``models/decoding.py``.

        Args:
            prompts: one non-empty 1-D LongTensor per example.
            use_cache: False prepares uncached decoding (the reference).
            **context: ``images``, ``image_mask``, ... as in :meth:`encode_context`.
        """
        _, rows = self._context_rows(context, len(prompts))
        return prefill(self.decoder, prompts, rows, use_cache=use_cache)

    def decode_batch(self, states: Sequence[SequenceState]) -> DecodeBatch:
        """A :class:`DecodeBatch` over prefilled sequences: ``step(tokens)`` -> next logits; members can
        finish (``keep``) and new ones join (``add``)."""
        return DecodeBatch(self.decoder, states)

    @torch.no_grad()
    def generate(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        *,
        config: GenerationConfig | None = None,
        **kwargs: Any,
    ) -> GenerateOutput:
        """Generate text for a batch (call ``model.eval()`` first).

        Args:
            input_ids: LongTensor (B, N) prompts for the decoder (start them with ``bos_token_id``),
                left- or right-padded as ``attention_mask`` says; None = every prompt is [bos].
            attention_mask: (B, N) True/1 = real prompt token; None = no padding.
            config: a :class:`GenerationConfig`.
            **kwargs: the context (``images``, ``image_mask``, ``videos``, ``video_mask``, ``context_ids``,
                ``context_mask``, as in :meth:`encode_context`) and :class:`GenerationConfig` fields that
                override ``config``'s (``model.generate(ids, images=x, strategy="beam", num_beams=4)``).

        Returns:
            :class:`GenerateOutput` (tokens after the prompt, EOS included, then padding).
        """
        context = {k: kwargs.pop(k) for k in CONTEXT_KEYS if k in kwargs}
        config = GenerationConfig(**{**(vars(config) if config is not None else {}), **kwargs})
        prompts = prompts_of(input_ids, attention_mask) if input_ids is not None else None
        batch, rows = self._context_rows(context, None if prompts is None else len(prompts))
        if prompts is None:
            bos = torch.tensor([self.config.decoder.bos_token_id], device=self.decoder.token_embeddings.weight.device)
            prompts = [bos] * batch
        return generate_tokens(self.decoder, prompts, rows, config)

    # ----- loading ----------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, path: Any) -> MultimodalModel:
        """Rebuild a float model saved by ``hybridformer.registry.save_model`` (the same weights, bit for
        bit); ``hybridformer.registry.load_model`` loads its int8 form too."""
        from hybridformer.models.multimodal_checkpoint import load_multimodal

        return load_multimodal(path)
