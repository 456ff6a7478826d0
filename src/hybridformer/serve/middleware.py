"""The ASGI layer in front of the routes: body-size limit, bearer-token auth, request metrics.

The body is read here, at most ``max_body_bytes`` of it, before any route sees it: a declared
``Content-Length`` over the limit is refused unread, a chunked body is refused as soon as it passes
the limit. Both get 413 in OpenAI's error shape.
"""

from __future__ import annotations

import hmac
import json
import time
from typing import Any, Awaitable, Callable

from hybridformer.serve.errors import error_body
from hybridformer.serve.metrics import ServeMetrics

__all__ = ["ServeMiddleware"]

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_ENDPOINTS = ("/v1/models", "/v1/classify", "/v1/embeddings", "/v1/chat/completions", "/health", "/metrics", "/")


async def _send_error(send: Send, status: int, message: str, type: str, code: str,
                      headers: dict[str, str] | None = None) -> None:
    body = json.dumps(error_body(message, type, None, code)).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class ServeMiddleware:
    """Wraps the FastAPI app.

    Args:
        app: the ASGI app.
        max_body_bytes: largest request body.
        api_key: when set, ``/v1/`` paths need ``Authorization: Bearer <api_key>``.
        metrics: request counts and latencies go here.
    """

    def __init__(self, app: Any, *, max_body_bytes: int, api_key: str | None, metrics: ServeMetrics) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.api_key = api_key
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        endpoint = path if path in _ENDPOINTS else "other"
        start = time.monotonic()
        status = {"code": 500}

        async def send_counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self._handle(scope, receive, send_counted, path)
        finally:
            self.metrics.requests.labels(endpoint, str(status["code"])).inc()
            self.metrics.latency.labels(endpoint).observe(time.monotonic() - start)

    async def _handle(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if self.api_key is not None and path.startswith("/v1/"):
            given = headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {self.api_key}".encode()):
                await _send_error(send, 401, "missing or wrong API key: send 'Authorization: Bearer <key>'",
                                  "authentication_error", "invalid_api_key", {"WWW-Authenticate": "Bearer"})
                return
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await _send_error(send, 413, f"request body of {declared} bytes is over max_body_bytes="
                              f"{self.max_body_bytes}", "invalid_request_error", "body_too_large")
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await _send_error(send, 413, f"request body is over max_body_bytes={self.max_body_bytes}",
                                  "invalid_request_error", "body_too_large")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the client's disconnect

        await self.app(scope, replay, send)
