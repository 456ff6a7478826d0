"""The FastAPI application: served models, their batchers, error handling, start-up and drain.

``create_app(models, config)`` gives an ASGI app for uvicorn. Every error a client can cause is
answered in OpenAI's shape with a 4xx; anything else is a 500 in the same shape, and the server goes on.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from hybridformer.serve.config import ServeConfig
from hybridformer.serve.errors import APIError, error_body
from hybridformer.serve.middleware import ServeMiddleware
from hybridformer.serve.models import ServedModel
from hybridformer.serve.routes import router
from hybridformer.serve.state import ServeState

__all__ = ["create_app", "ServeState"]

log = logging.getLogger("hybridformer.serve")


def _param(loc: tuple[Any, ...]) -> str | None:
    """Pydantic's error location as a field path: ('body', 'messages', 0, 'content') -> messages[0].content."""
    out = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("str", "list[str]", "list[int]", "list[list[int]]", "text", "image_url") and out:
            continue  # union-member tags pydantic adds
        else:
            out += f".{part}" if out else str(part)
    return out or None


def _validation_error(exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request", "type": ""}
    if first.get("type") == "json_invalid":
        detail = first.get("ctx", {}).get("error", first.get("msg"))
        return JSONResponse(error_body(f"the body is not valid JSON: {detail}", "invalid_request_error", None,
                                       "invalid_json"), status_code=400)
    param = _param(tuple(first.get("loc", ())))
    if param is None and first.get("type") in ("model_attributes_type", "dict_type"):
        message = "the body must be a JSON object (send Content-Type: application/json)"
        return JSONResponse(error_body(message, "invalid_request_error", None, "invalid_json"), status_code=400)
    loc = tuple(first.get("loc", ()))
    same = [e for e in errors if tuple(e.get("loc", ()))[:2] == loc[:2]]
    if len(same) > 1 and len(loc) > 2 and isinstance(loc[2], str):  # a union field: what each alternative wanted
        param = _param(loc[:2])
        wanted = "; ".join(dict.fromkeys(e["msg"] for e in same))
        message = f"{param}: matches none of the accepted types ({wanted})"
    else:
        message = f"{param or 'body'}: {first.get('msg')}"
    return JSONResponse(error_body(message, "invalid_request_error", param, "invalid_value"), status_code=400)


def create_app(models: list[ServedModel], config: ServeConfig) -> FastAPI:
    """The server's ASGI app for `models` under `config` (run it with uvicorn)."""

    state = ServeState(models, config)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state.start()
        yield
        await state.drain(config.drain_timeout_s)

    app = FastAPI(title="hybridformer", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.serve = state
    app.include_router(router)
    app.add_middleware(ServeMiddleware, max_body_bytes=config.max_body_bytes, api_key=config.api_key,
                       metrics=state.metrics)

    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_error(exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found" if exc.status_code == 404 else "invalid_request_error"
        return JSONResponse(error_body(f"{request.method} {request.url.path}: {exc.detail}", kind, None, None),
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return JSONResponse(error_body(f"internal error: {type(exc).__name__}", "server_error", None, None),
                            status_code=500)

    return app
