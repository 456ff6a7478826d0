"""Pick each sequence's next token from the model's logits with that request's settings.

The nucleus filter is the one ``generate`` uses (:func:`hybridformer.models.generate.top_p_filter`), so
the server and the command line sample the same distribution."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from hybridformer.models.generate import top_p_filter

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
        probs = torch.softmax(top_p_filter(logits[i].double() / p.temperature, p.top_p), dim=-1)  # (V,)
        tokens[i] = torch.multinomial(probs, 1, generator=p.generator)[0]
    return tokens
