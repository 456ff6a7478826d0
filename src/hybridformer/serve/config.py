"""Configuration of the server: address, batching policy, limits. Every field is a ``--flag`` of
``hybridformer serve`` (``max_batch_size`` is ``--max-batch-size``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from hybridformer.config import check

__all__ = ["ServeConfig"]


@dataclass
class ServeConfig:
    """How ``hybridformer serve`` listens, batches, and bounds what a request may ask for."""

    host: str = "127.0.0.1"
    """Address to listen on (127.0.0.1: this machine only)."""
    port: int = 8000
    """TCP port to listen on (0 = any free port)."""
    api_key: str | None = None
    """When set, every /v1/ request needs the header `Authorization: Bearer <api_key>` (else 401)."""
    max_batch_size: int = 32
    """Most requests (texts) in one encoder forward; 1 turns batching off."""
    max_batch_tokens: int = 8192
    """Most padded tokens (batch size x longest input) in one encoder forward."""
    max_wait_ms: float = 5.0
    """How long a batch that is not full may wait for more requests (from what: batch_wait)."""
    batch_wait: Literal["idle-aware", "model-free", "first-arrival"] = "idle-aware"
    """What max_wait_ms counts from. first-arrival: the oldest waiting request's arrival. idle-aware:
    the same, but a request reaching an idle model (its last forward ran one input, nothing behind
    it) runs at once. model-free: at once on an idle model, else from the end of the last forward,
    so a saturated server waits for the clients it just answered and forms full batches."""
    length_buckets: list[int] = field(default_factory=lambda: [16, 32, 64, 128, 256])
    """Upper bounds (tokens) of the length buckets; one batch holds inputs of one bucket only, so
    short inputs are not padded to a long one's length. Longer inputs form the last bucket."""
    max_queue: int = 256
    """Requests that may wait per model; beyond it a request gets 429 with Retry-After."""
    retry_after_s: int = 1
    """Seconds a 429 tells the client to wait (the Retry-After header)."""
    request_timeout_s: float = 60.0
    """A request not answered within this many seconds gets 504 and leaves the queue or batch."""
    max_body_bytes: int = 8 * 2**20
    """Largest request body accepted (bytes); larger gets 413 before it is read."""
    max_prompt_tokens: int = 512
    """Longest input (text to classify or embed, or chat prompt) in tokens; longer gets 400."""
    max_inputs: int = 64
    """Most texts in one /v1/embeddings or /v1/classify request."""
    max_new_tokens: int = 256
    """Most tokens one chat completion may generate (the default and the cap of max_tokens)."""
    max_running: int = 16
    """Most sequences decoded together (continuous batching); more wait in the queue."""
    max_images: int = 4
    """Most images in one chat request."""
    max_image_bytes: int = 4 * 2**20
    """Largest encoded image (bytes, after base64 decoding)."""
    max_image_pixels: int = 4096 * 4096
    """Largest image (width x height), read from the header before decoding (decompression bombs)."""
    keep_alive_s: int = 75
    """How long an idle keep-alive connection stays open. Longer than clients' own idle expiry (httpx
    and the openai client: 5 s), so a client never sends on a connection the server is closing."""
    drain_timeout_s: float = 30.0
    """On shutdown, how long to wait for queued and running requests to finish."""
    normalize_embeddings: bool = True
    """L2-normalise embeddings (as OpenAI's and sentence-transformers' MiniLM are)."""
    torch_threads: int = 0
    """Threads of torch's intra-op pool for the model; 0 = torch's default."""
    http_stack: Literal["auto", "fast", "asyncio"] = "auto"
    """uvicorn's event loop and HTTP parser. fast: uvloop + httptools (less CPU per request; an error
    when not installed); asyncio: asyncio + h11 (pure Python); auto: fast when importable, else
    asyncio (with a log line)."""

    def __post_init__(self) -> None:
        check(0 <= self.port <= 65535, "port", f"must be in [0, 65535], got {self.port}")
        check(self.api_key is None or len(self.api_key) > 0, "api_key", "must not be empty")
        for name in ("max_batch_size", "max_batch_tokens", "max_queue", "max_body_bytes", "max_prompt_tokens",
                     "max_inputs", "max_new_tokens", "max_running", "max_image_bytes", "max_image_pixels"):
            value = getattr(self, name)
            check(value >= 1, name, f"must be >= 1, got {value}")
        check(self.max_images >= 0, "max_images", f"must be >= 0, got {self.max_images}")
        check(self.max_wait_ms >= 0, "max_wait_ms", f"must be >= 0, got {self.max_wait_ms}")
        check(self.retry_after_s >= 1, "retry_after_s", f"must be >= 1, got {self.retry_after_s}")
        check(self.request_timeout_s > 0, "request_timeout_s", f"must be > 0, got {self.request_timeout_s}")
        check(self.keep_alive_s >= 1, "keep_alive_s", f"must be >= 1, got {self.keep_alive_s}")
        check(self.drain_timeout_s >= 0, "drain_timeout_s", f"must be >= 0, got {self.drain_timeout_s}")
        check(self.torch_threads >= 0, "torch_threads", f"must be >= 0, got {self.torch_threads}")
        check(
            bool(self.length_buckets) and all(b >= 1 for b in self.length_buckets)
            and list(self.length_buckets) == sorted(set(self.length_buckets)),
            "length_buckets",
            f"must be increasing positive token counts, got {self.length_buckets}",
        )

    def bucket_of(self, length: int) -> int:
        """Index of the length bucket of an input of `length` tokens."""
        return next((i for i, bound in enumerate(self.length_buckets) if length <= bound), len(self.length_buckets))
