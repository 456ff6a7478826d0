"""Model execution: what the batchers call, in their worker thread, and nothing about queues or HTTP.

- :class:`EncoderEngine` runs one-shot encoders (classification, embeddings): tokenize, pad a batch
  of token lists, one forward, one result per row.
- :class:`Generator` is the contract of a generative model under continuous batching: prefill a
  batch of prompts into a decoding state, step the state one token at a time, drop finished rows
  (:meth:`Generator.select`) and add prefilled newcomers (:meth:`Generator.concat`). Sampling is
  not the model's: it returns logits and :mod:`.sampling` picks the tokens with each request's
  settings. The batcher (:mod:`.scheduler`) decides who runs; the model only executes. Its
  :class:`~hybridformer.models.prompt_format.PromptFormat` (the model folder's chat template and
  default decoding) says how a chat becomes a prompt and how a request naming no temperature decodes.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hybridformer.models.prompt_format import PromptFormat

__all__ = ["EncoderEngine", "Generator", "Prompt", "pad_right"]


def pad_right(rows: list[list[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """Pad token lists on the right to the longest: (B, N) ids and the (B, N) bool mask of real tokens."""
    longest = max(len(r) for r in rows)
    ids = torch.full((len(rows), longest), pad_id, dtype=torch.long)
    mask = torch.zeros(len(rows), longest, dtype=torch.bool)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = True
    return ids, mask


class EncoderEngine:
    """A text encoder (or classifier) answering one batch at a time.

    Args:
        model: a ``TextClassifier`` (task ``classify``) or anything with an ``encoder``-like
            forward returning ``last_hidden_state`` (task ``embed``), in eval mode.
        tokenizer: its Hugging Face tokenizer (adds [CLS]/[SEP] or <s>/</s>).
        task: ``classify`` returns class probabilities; ``embed`` mean-pools the real tokens.
        max_tokens: longest input accepted (the model's positions and the server's limit).
        normalize: L2-normalise embeddings.
        label_names: class names of a classifier (``LABEL_i`` when None).
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        task: Literal["classify", "embed"],
        *,
        max_tokens: int,
        normalize: bool = True,
        label_names: list[str] | None = None,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.task = task
        self.max_tokens = max_tokens
        self.normalize = normalize
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.vocab_size = len(tokenizer)
        self.label_names = label_names
        # The Rust tokenizer itself, without transformers' per-call Python (half the cost of a short
        # text here); a copy, so no truncation or padding state set elsewhere applies to it.
        backend = getattr(tokenizer, "backend_tokenizer", None)
        self._backend = copy.deepcopy(backend) if backend is not None else None
        if self._backend is not None:
            self._backend.no_truncation()
            self._backend.no_padding()

    def encode(self, texts: list[str]) -> list[list[int]]:
        """Token ids (with special tokens) of each text, cut at max_tokens + 1 so too long shows."""
        cut = self.max_tokens + 1
        if self._backend is not None:
            return [e.ids[:cut] for e in self._backend.encode_batch(texts, add_special_tokens=True)]
        out = self.tokenizer(texts, add_special_tokens=True, truncation=True, max_length=cut)
        return [list(ids) for ids in out["input_ids"]]

    @torch.inference_mode()
    def run(self, batch: list[list[int]]) -> list[Tensor]:
        """One forward over the batch; per row, the (num_labels,) probabilities or the (d,) embedding."""
        ids, mask = pad_right(batch, self.pad_id)  # (B, N)
        if self.task == "classify":
            logits = self.model(ids, attention_mask=mask).logits  # (B, num_labels)
            return list(torch.softmax(logits.float(), dim=-1))
        hidden = self.model(ids, attention_mask=mask).last_hidden_state  # (B, N, d)
        weights = mask.unsqueeze(-1).to(hidden.dtype)  # (B, N, 1)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)  # (B, d)
        if self.normalize:
            pooled = F.normalize(pooled.float(), dim=-1)
        return list(pooled.float())


@dataclass
class Prompt:
    """One generation request's model input."""

    token_ids: list[int]
    """The prompt's tokens (chat template applied)."""
    images: list[Tensor] = field(default_factory=list)
    """Decoded images, float (3, H, W) in [0, 1], in the order they appear in the messages."""


class Generator(ABC):
    """Model execution for generation under continuous batching.

    A *state* is the model's own decoding state (KV caches, positions) for a batch of sequences;
    the scheduler never looks inside it. Row ``i`` of a state is the ``i``-th prompt given to
    :meth:`prefill` (or the ``i``-th row after :meth:`select` / :meth:`concat`). Calls come from one
    worker thread, never concurrently.

    Attributes:
        eos_token_ids: tokens that end a sequence.
        max_context: most tokens (prompt + generated) a sequence may hold.
        tokenizer: the Hugging Face tokenizer (prompt tokens, decoding).
        prompt_format: the chat template and default decoding the model was trained for.
        accepts_images: prompts may carry images (else image parts get 400).
    """

    eos_token_ids: frozenset[int]
    max_context: int
    tokenizer: Any
    prompt_format: PromptFormat
    accepts_images: bool = False

    @abstractmethod
    def prefill(self, prompts: list[Prompt]) -> tuple[Any, Tensor]:
        """Run the prompts; return their state and the (B, V) logits of each one's next token."""

    @abstractmethod
    def step(self, state: Any, tokens: Tensor) -> Tensor:
        """Append one token per row ((B,) long) to the state in place; return the (B, V) next logits."""

    @abstractmethod
    def select(self, state: Any, rows: list[int]) -> Any:
        """The state of the given rows only, in that order (finished sequences leave)."""

    @abstractmethod
    def concat(self, states: list[Any]) -> Any:
        """One state holding the rows of each state in turn (prefilled sequences join)."""

    def prompt_length(self, prompt: Prompt) -> int:
        """Positions a prompt takes in the context (its tokens; models with images add theirs)."""
        return len(prompt.token_ids)

    def chat_prompt(self, messages: list[tuple[str, str]], images: list[Tensor]) -> Prompt:
        """Apply the model's chat template (``prompt_format``); images go with the prompt.

        Args:
            messages: (role, text) per message (a message's text parts joined by spaces).
            images: the decoded images in order; the model decides where they enter.
        """
        chat = [{"role": role, "content": text} for role, text in messages]
        return Prompt(token_ids=self.prompt_format.prompt_ids(self.tokenizer, chat), images=images)

    def detokenize(self, token_ids: list[int]) -> str:
        """The text of generated tokens."""
        # No clean-up of spaces: the text of a prefix then stays a prefix of the text, so deltas add up.
        return self.tokenizer.decode(token_ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
