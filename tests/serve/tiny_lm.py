"""A RANDOMLY INITIALISED small causal LM behind the server's Generator interface, for the server's tests.

Our own causal blocks with a KV cache and the bundled MiniLM tokenizer: much smaller than the
multimodal tiny model that ``--model tiny`` serves, so the batching, streaming and failure-isolation
tests run fast against a real generator. Images enter as 16 patch tokens. Not shipped in the package.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hybridformer.attention.cache import KVCache
from hybridformer.attention.config import AttentionConfig
from hybridformer.blocks import BlockConfig, TransformerBlock
from hybridformer.serve.engine import Generator, Prompt
from hybridformer.models.prompt_format import PromptFormat

__all__ = ["TinyLMConfig", "TinyCausalLM", "TinyGenerator", "TinyState", "ROLE_TEMPLATE"]

ROLE_TEMPLATE = "[CLS]{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}assistant:"
"""``role: text`` lines then ``assistant:``, after MiniLM's [CLS] (the tiny LM's begin-of-text)."""


@dataclass
class TinyLMConfig:
    """Shape of the tiny random causal LM."""

    vocab_size: int = 30522
    """Tokens (MiniLM's WordPiece vocabulary)."""
    d_model: int = 64
    """Hidden size."""
    n_heads: int = 4
    """Attention heads."""
    n_layers: int = 2
    """Causal transformer blocks."""
    d_ff: int = 128
    """FFN inner width."""
    max_positions: int = 1024
    """Longest sequence (image patches + prompt + generated tokens)."""
    image_size: int = 32
    """Images are resized to image_size x image_size."""
    patch: int = 8
    """Side of the square image patches; (image_size / patch)^2 tokens per image."""
    seed: int = 0
    """Seed of the random initialisation (every server builds the same model)."""


@dataclass
class TinyState:
    """Decoding state of a batch: one KV cache per layer and each row's next position."""

    caches: list[KVCache]
    positions: Tensor
    """(B,) long: the position of each row's next token (real tokens counted only)."""


class TinyCausalLM(nn.Module):
    """Token + position embeddings, pre-LN causal blocks (dense attention), an output projection.

    The projection is not tied to the token embeddings: at random initialisation a tied one makes
    every step repeat the last token."""

    def __init__(self, config: TinyLMConfig) -> None:
        super().__init__()
        self.config = config
        d = config.d_model
        self.tokens = nn.Embedding(config.vocab_size, d)
        self.positions = nn.Embedding(config.max_positions, d)
        self.patches = nn.Linear(3 * config.patch * config.patch, d)
        attention = AttentionConfig(d_model=d, n_heads=config.n_heads, kind="full", causal=True)
        block = BlockConfig(d_model=d, d_ff=config.d_ff, norm="pre", dropout=0.0, attention=attention)
        self.blocks = nn.ModuleList(TransformerBlock(block) for _ in range(config.n_layers))
        self.final_norm = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, config.vocab_size, bias=False)
        nn.init.normal_(self.tokens.weight, std=0.5)
        nn.init.normal_(self.positions.weight, std=0.1)

    def image_tokens(self, image: Tensor) -> Tensor:
        """(3, H, W) in [0, 1] -> (P, d) patch embeddings."""
        cfg = self.config
        x = F.interpolate(image[None].to(self.patches.weight.dtype), size=(cfg.image_size, cfg.image_size),
                          mode="bilinear", antialias=True, align_corners=False)  # (1, 3, S, S)
        x = F.unfold(x, kernel_size=cfg.patch, stride=cfg.patch)  # (1, 3*p*p, P)
        return self.patches(x[0].transpose(0, 1))  # (P, d)

    def forward(self, embeds: Tensor, mask: Tensor | None, positions: Tensor, caches: list[KVCache]) -> Tensor:
        """Next-token logits of the last column.

        Args:
            embeds: (B, T, d) input embeddings (tokens or image patches) of the new positions.
            mask: bool (B, T), True = real; None = all real.
            positions: (B, T) long positions of the new tokens.
            caches: one KVCache per block, updated in place.

        Returns:
            (B, V) logits.
        """
        x = embeds + self.positions(positions)
        for block, cache in zip(self.blocks, caches):
            x = block(x, key_padding_mask=mask, cache=cache).hidden_states
        last = self.final_norm(x[:, -1])  # (B, d)
        return self.lm_head(last)  # (B, V)


class TinyGenerator(Generator):
    """:class:`~.engine.Generator` over :class:`TinyCausalLM`.

    Args:
        tokenizer: the MiniLM tokenizer (``hybridformer.data.minilm_tokenizer()``).
        config: the model's shape; vocab_size is taken from the tokenizer.
        dtype: parameter dtype (float64 makes batched and unbatched outputs equal to rounding).
    """

    def __init__(self, tokenizer, config: TinyLMConfig | None = None, dtype: torch.dtype = torch.float32) -> None:
        config = config or TinyLMConfig()
        config = TinyLMConfig(**{**config.__dict__, "vocab_size": len(tokenizer)})
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.model = TinyCausalLM(config).to(dtype).eval()
        self.tokenizer = tokenizer
        # A generic chat LM's format ("user: hi\nassistant:"), sampled at temperature 1 unless asked otherwise.
        self.prompt_format = PromptFormat(ROLE_TEMPLATE, do_sample=True)
        self.accepts_images = True
        self.max_context = config.max_positions
        self.eos_token_ids = frozenset(t for t in (tokenizer.sep_token_id, tokenizer.eos_token_id) if t is not None)

    def prompt_length(self, prompt: Prompt) -> int:
        """Positions a prompt takes: its tokens and its images' patches."""
        per_image = (self.model.config.image_size // self.model.config.patch) ** 2
        return len(prompt.token_ids) + per_image * len(prompt.images)

    @torch.inference_mode()
    def prefill(self, prompts: list[Prompt]) -> tuple[TinyState, Tensor]:
        model = self.model
        rows = []
        for p in prompts:
            parts = [model.image_tokens(img) for img in p.images]
            parts.append(model.tokens(torch.tensor(p.token_ids, dtype=torch.long)))
            rows.append(torch.cat(parts))  # (T_i, d)
        longest = max(r.shape[0] for r in rows)
        d = model.config.d_model
        embeds = rows[0].new_zeros(len(rows), longest, d)  # (B, T, d), left-padded
        mask = torch.zeros(len(rows), longest, dtype=torch.bool)
        for i, r in enumerate(rows):
            embeds[i, longest - r.shape[0]:] = r
            mask[i, longest - r.shape[0]:] = True
        positions = (mask.long().cumsum(1) - 1).clamp(min=0)  # (B, T)
        caches = [KVCache() for _ in model.blocks]
        logits = model(embeds, mask, positions, caches)
        return TinyState(caches, mask.sum(1)), logits

    @torch.inference_mode()
    def step(self, state: TinyState, tokens: Tensor) -> Tensor:
        embeds = self.model.tokens(tokens[:, None])  # (B, 1, d)
        logits = self.model(embeds, None, state.positions[:, None], state.caches)
        state.positions = state.positions + 1
        return logits

    def select(self, state: TinyState, rows: list[int]) -> TinyState:
        index = torch.tensor(rows, dtype=torch.long)
        caches = []
        for c in state.caches:
            valid = c.valid[index]
            # Drop leading columns no remaining row uses (a long sequence left), so memory stays bounded.
            used = valid.any(0).nonzero()
            start = int(used[0]) if len(used) else valid.shape[1]
            caches.append(_cache(c.keys[index, :, start:], c.values[index, :, start:], valid[:, start:]))
        return TinyState(caches, state.positions[index])

    def concat(self, states: list[TinyState]) -> TinyState:
        caches = []
        for layer in zip(*(s.caches for s in states)):
            longest = max(c.keys.shape[2] for c in layer)
            pad = [longest - c.keys.shape[2] for c in layer]  # left-pad shorter caches with invalid keys
            caches.append(_cache(
                torch.cat([F.pad(c.keys, (0, 0, p, 0)) for c, p in zip(layer, pad)]),
                torch.cat([F.pad(c.values, (0, 0, p, 0)) for c, p in zip(layer, pad)]),
                torch.cat([F.pad(c.valid, (p, 0), value=False) for c, p in zip(layer, pad)]),
            ))
        return TinyState(caches, torch.cat([s.positions for s in states]))


def _cache(keys: Tensor, values: Tensor, valid: Tensor) -> KVCache:
    """A dense (kind="full") cache holding these keys (B, H, L, D); its length is L."""
    return KVCache(keys=keys, values=values, valid=valid, length=keys.shape[2])
