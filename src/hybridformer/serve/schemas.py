"""Request bodies of the endpoints (OpenAI's shapes), checked strictly: a wrong type is a 400 naming
the field, never a coercion. Unknown fields are ignored, as OpenAI's clients send some we do not use."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ClassifyRequest",
    "EmbeddingsRequest",
    "ChatRequest",
    "ChatMessage",
    "TextPart",
    "ImagePart",
    "EncoderInput",
]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


EncoderInput = Union[str, list[str], list[int], list[list[int]]]
"""One text, several texts, one token-id list, or several token-id lists (as OpenAI's embeddings)."""


class ClassifyRequest(_Strict):
    """``POST /v1/classify``: class probabilities of each input."""

    model: str
    input: EncoderInput


class EmbeddingsRequest(_Strict):
    """``POST /v1/embeddings`` (OpenAI): one vector per input, mean-pooled over the real tokens."""

    model: str
    input: EncoderInput
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None


class ImageURL(_Strict):
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class ImagePart(_Strict):
    type: Literal["image_url"]
    image_url: ImageURL


ContentPart = Annotated[Union[TextPart, ImagePart], Field(discriminator="type")]


class ChatMessage(_Strict):
    role: Literal["system", "user", "assistant", "developer"]
    content: str | list[ContentPart]


class StreamOptions(_Strict):
    include_usage: bool = False


class ChatRequest(_Strict):
    """``POST /v1/chat/completions`` (OpenAI): text and base64 ``image_url`` parts, optional streaming."""

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    """None: the model's default (its folder's generation config; greedy for captioning models)."""
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    """None: the model's default."""
    n: int = Field(default=1, ge=1, le=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None

    def stop_strings(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else [s for s in self.stop if s]
