"""Errors a request can end in, answered in OpenAI's shape: ``{"error": {message, type, param, code}}``."""

from __future__ import annotations

from typing import Any

__all__ = ["APIError", "QueueFullError", "error_body", "bad_request"]


class APIError(Exception):
    """An error answered to the client with an HTTP status (never a stack trace).

    Args:
        status: HTTP status code.
        message: what went wrong, naming the offending field where there is one.
        type: OpenAI's error type (``invalid_request_error``, ``rate_limit_error``, ...).
        param: the request field at fault, e.g. ``messages[0].content[1].image_url``.
        code: a machine-readable code (``context_length_exceeded``, ``model_not_found``, ...).
        headers: extra response headers (``Retry-After`` on 429).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.param, self.code)


class QueueFullError(APIError):
    """The model's queue is at capacity: 429 with ``Retry-After``."""

    def __init__(self, model: str, capacity: int, retry_after_s: int) -> None:
        super().__init__(
            429,
            f"model {model!r} is at capacity ({capacity} requests waiting); retry after {retry_after_s} s",
            type="rate_limit_error",
            code="rate_limit_exceeded",
            headers={"Retry-After": str(retry_after_s)},
        )


def error_body(message: str, type: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """The OpenAI error object."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    """A 400 ``invalid_request_error``."""
    return APIError(400, message, param=param, code=code)
