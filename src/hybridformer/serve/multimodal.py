"""The :class:`~.engine.Generator` of the multimodal model (``MultimodalModel.prefill`` / ``decode_batch``).

Prompts follow the model's chat template (``<bos> text`` for our decoder: an image alone asks for a
caption) and a request naming no temperature decodes as its ``generation_config.json`` says.

Each prompt is prefilled with its own image (the model encodes it once and keeps its
cross-attention keys/values in the sequence's state); the running batch is the model's
``DecodeBatch``: ``step`` feeds one token per member, ``keep`` drops finished members, and joining
sequences are merged into a new ``DecodeBatch``. Images are resized to the model's image size.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from hybridformer.serve.engine import Generator, Prompt
from hybridformer.models.prompt_format import PromptFormat, decoder_prompt_format

__all__ = ["MultimodalGenerator"]


class MultimodalGenerator(Generator):
    """Serve a ``hybridformer.models.MultimodalModel`` for chat.

    Args:
        model: the multimodal model (put in eval mode here).
        tokenizer: its tokenizer (the decoder's vocabulary).
        prompt_format: its folder's (:func:`~hybridformer.models.prompt_format.read_prompt_format`);
            None: the decoder's training format, greedy.
    """

    def __init__(self, model: Any, tokenizer: Any, prompt_format: PromptFormat | None = None) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        decoder = model.config.decoder
        self.prompt_format = prompt_format or decoder_prompt_format(tokenizer, decoder)
        self.eos_token_ids = frozenset({decoder.eos_token_id})
        self.max_context = decoder.max_positions
        self.accepts_images = model.config.image is not None

    def _context(self, prompt: Prompt) -> dict[str, Tensor]:
        if not prompt.images:
            return {}
        if len(prompt.images) > 1:
            raise ValueError(f"this model takes one image per prompt, got {len(prompt.images)}")
        size = self.model.config.image.image_size
        image = F.interpolate(prompt.images[0][None].float(), size=(size, size), mode="bilinear",
                              antialias=True, align_corners=False)  # (1, 3, S, S)
        return {"images": image}

    @torch.inference_mode()
    def prefill(self, prompts: list[Prompt]) -> tuple[Any, Tensor]:
        states, logits = [], []
        for p in prompts:  # each with its own context (image or none)
            s, lg = self.model.prefill([torch.tensor(p.token_ids, dtype=torch.long)], **self._context(p))
            states += s
            logits.append(lg)
        return self.model.decode_batch(states), torch.cat(logits)

    @torch.inference_mode()
    def step(self, state: Any, tokens: Tensor) -> Tensor:
        return state.step(tokens)

    def select(self, state: Any, rows: list[int]) -> Any:
        state.keep(rows)
        return state

    def concat(self, states: list[Any]) -> Any:
        return self.model.decode_batch([member for s in states for member in s.members])
