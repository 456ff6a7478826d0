"""Pick each sequence's next token from the model's logits with that request's settings."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = ["SamplingParams", "sample"]


@dataclass
class SamplingParams:
    """One request's decoding settings (OpenAI's names)."""

    temperature: float = 1.0
    """0 = greedy (argmax); otherwise logits are divided by it before the softmax."""
    top_p: float = 1.0
    """Nucleus sampling: draw from the smallest set of tokens whose probability reaches top_p."""
    seed: int | None = None
    """Seed of this request's random generator (reproducible samples); None = random."""
    generator: torch.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.generator = torch.Generator()
        if self.seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(self.seed)


def sample(logits: Tensor, params: list[SamplingParams]) -> Tensor:
    """Next tokens (B,) long from logits (B, V), row i with params[i]."""
    tokens = logits.argmax(dim=-1)
    for i, p in enumerate(params):
        if p.temperature == 0.0:
            continue
        probs = torch.softmax(logits[i].double() / p.temperature, dim=-1)  # (V,)
        if p.top_p < 1.0:
            sorted_probs, order = probs.sort(descending=True)
            # keep tokens until the mass before them reaches top_p (the first token always stays)
            keep = (sorted_probs.cumsum(0) - sorted_probs) < p.top_p
            probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_probs[keep])
        tokens[i] = torch.multinomial(probs, 1, generator=p.generator)[0]
    return tokens
