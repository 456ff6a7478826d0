"""The endpoints: validate and tokenize off the event loop, queue, await the batcher, answer in OpenAI's shape."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from pathlib import Path
from typing import Any, AsyncIterator

import torch
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST

from hybridformer.serve.state import ServeState
from hybridformer.serve.batcher import DynamicBatcher
from hybridformer.serve.engine import EncoderEngine, Generator, Prompt
from hybridformer.serve.errors import APIError, bad_request
from hybridformer.serve.images import decode_image
from hybridformer.serve.sampling import SamplingParams
from hybridformer.serve.scheduler import Delta, Finished, GenerationRequest
from hybridformer.serve.schemas import ChatRequest, ClassifyRequest, EmbeddingsRequest, EncoderInput, TextPart

__all__ = ["router"]

router = APIRouter()
_INDEX = Path(__file__).parent / "static" / "index.html"
_INLINE_TOKENIZE_CHARS = 4096
"""Texts up to this many characters in total are tokenized on the event loop (well under 1 ms)."""


def _state(request: Request) -> ServeState:
    return request.app.state.serve


@router.get("/", include_in_schema=False)
async def playground() -> FileResponse:
    return FileResponse(_INDEX, media_type="text/html")


@router.get("/health")
async def health(request: Request) -> JSONResponse:
    st = _state(request)
    status = "draining" if st.draining else "ok"
    return JSONResponse({"status": status, "models": sorted(st.models)}, status_code=503 if st.draining else 200)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    return Response(_state(request).metrics.export(), media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, Any]:
    st = _state(request)
    data = [
        {"id": m.name, "object": "model", "created": st.created, "owned_by": "hybridformer",
         "capabilities": m.capabilities()}
        for m in st.models.values()
    ]
    return {"object": "list", "data": data}


async def _encoder_inputs(value: EncoderInput, engine: EncoderEngine, limit: int) -> list[list[int]]:
    """Token ids of each input of /v1/classify or /v1/embeddings, checked against the limits."""
    if isinstance(value, str):
        value = [value]
    if len(value) == 0:
        raise bad_request("input must not be empty", "input", "invalid_value")
    if isinstance(value[0], int):
        value = [value]  # one token-id list
    if len(value) > limit:
        raise bad_request(f"input has {len(value)} items, more than max_inputs={limit}", "input", "too_many_inputs")
    if isinstance(value[0], str):
        # Short inputs are tokenized in place (a thread hop costs more); long ones off the event loop.
        short = sum(len(v) for v in value) <= _INLINE_TOKENIZE_CHARS
        rows = engine.encode(value) if short else await asyncio.to_thread(engine.encode, value)
    else:
        rows = [list(r) for r in value]
        for i, row in enumerate(rows):
            if not row or min(row) < 0 or max(row) >= engine.vocab_size:
                raise bad_request(f"input[{i}]: token ids must be a non-empty list in [0, {engine.vocab_size})",
                                  f"input[{i}]", "invalid_value")
    for i, row in enumerate(rows):
        if len(row) > engine.max_tokens:
            raise bad_request(
                f"input[{i}] is longer than the limit of {engine.max_tokens} tokens (max_prompt_tokens and the "
                f"model's positions)", f"input[{i}]", "context_length_exceeded",
            )
    return rows


async def _run_encoder(batcher: DynamicBatcher, rows: list[list[int]], timeout: float) -> list[torch.Tensor]:
    futures = batcher.submit(rows)
    try:
        return await asyncio.wait_for(asyncio.gather(*futures), timeout)
    except asyncio.TimeoutError:
        raise APIError(504, f"request timed out after {timeout} s (request_timeout_s)", type="timeout",
                       code="timeout") from None
    finally:
        for f in futures:
            f.cancel()  # a no-op on resolved ones; frees the others' places in the queue
        batcher.forget_cancelled()


def _usage(rows: list[list[int]]) -> dict[str, int]:
    n = sum(len(r) for r in rows)
    return {"prompt_tokens": n, "total_tokens": n}


@router.post("/v1/classify")
async def classify(body: ClassifyRequest, request: Request) -> JSONResponse:
    st = _state(request)
    batcher = st.lookup(body.model, st.classify, "classification (/v1/classify)")
    engine = batcher.engine
    rows = await _encoder_inputs(body.input, engine, st.config.max_inputs)
    probs = await _run_encoder(batcher, rows, st.config.request_timeout_s)
    data = []
    for i, p in enumerate(probs):
        names = engine.label_names or [f"LABEL_{k}" for k in range(len(p))]
        best = int(p.argmax())
        data.append({"object": "classification", "index": i, "label": names[best], "label_id": best,
                     "probabilities": {name: float(v) for name, v in zip(names, p)}})
    # JSONResponse directly: FastAPI's jsonable_encoder walk of plain dicts is pure overhead here.
    return JSONResponse({"object": "list", "model": body.model, "data": data, "usage": _usage(rows)})


@router.post("/v1/embeddings")
async def embeddings(body: EmbeddingsRequest, request: Request) -> JSONResponse:
    st = _state(request)
    batcher = st.lookup(body.model, st.embed, "embeddings (/v1/embeddings)")
    rows = await _encoder_inputs(body.input, batcher.engine, st.config.max_inputs)
    vectors = await _run_encoder(batcher, rows, st.config.request_timeout_s)
    if body.dimensions is not None:
        width = vectors[0].shape[0]
        if body.dimensions > width:
            raise bad_request(f"dimensions={body.dimensions} is more than the model's {width}", "dimensions")
        vectors = [torch.nn.functional.normalize(v[: body.dimensions], dim=0) for v in vectors]
    data = []
    for i, v in enumerate(vectors):
        if body.encoding_format == "base64":
            encoded: Any = base64.b64encode(v.float().numpy().astype("<f4").tobytes()).decode()
        else:
            encoded = v.tolist()
        data.append({"object": "embedding", "index": i, "embedding": encoded})
    return JSONResponse({"object": "list", "data": data, "model": body.model, "usage": _usage(rows)})


async def _chat_prompt(body: ChatRequest, gen: Generator, st: ServeState) -> Prompt:
    """The prompt of a chat request: text parts joined, base64 images decoded within the limits."""
    cfg = st.config
    messages: list[tuple[str, str]] = []
    images: list[tuple[str, str]] = []  # (url, param)
    for i, message in enumerate(body.messages):
        if isinstance(message.content, str):
            messages.append((message.role, message.content))
            continue
        texts = []
        for j, part in enumerate(message.content):
            if isinstance(part, TextPart):
                texts.append(part.text)
            elif not gen.accepts_images:
                raise bad_request(f"model {body.model!r} takes no images", f"messages[{i}].content[{j}]",
                                  "images_not_supported")
            else:
                images.append((part.image_url.url, f"messages[{i}].content[{j}].image_url.url"))
        messages.append((message.role, " ".join(texts)))
    if len(images) > cfg.max_images:
        raise bad_request(f"{len(images)} images, more than max_images={cfg.max_images}", "messages",
                          "too_many_images")
    decoded = [
        await asyncio.to_thread(decode_image, url, max_bytes=cfg.max_image_bytes,
                                max_pixels=cfg.max_image_pixels, param=param)
        for url, param in images
    ]
    return await asyncio.to_thread(gen.chat_prompt, messages, decoded)


def _new_token_budget(body: ChatRequest, prompt_tokens: int, gen: Generator, st: ServeState) -> int:
    limit = st.config.max_new_tokens
    asked = body.max_completion_tokens or body.max_tokens
    if asked is not None and asked > limit:
        raise bad_request(f"max_tokens={asked} is more than the server's max_new_tokens={limit}", "max_tokens",
                          "invalid_value")
    if asked is None and gen.prompt_format.max_new_tokens is not None:  # the model's generation config
        asked = min(gen.prompt_format.max_new_tokens, limit)
    if prompt_tokens > st.config.max_prompt_tokens:
        raise bad_request(f"the prompt has {prompt_tokens} tokens, more than max_prompt_tokens="
                          f"{st.config.max_prompt_tokens}", "messages", "context_length_exceeded")
    room = gen.max_context - prompt_tokens
    if room < 1:
        raise bad_request(f"the prompt has {prompt_tokens} tokens, the model's context is {gen.max_context}",
                          "messages", "context_length_exceeded")
    return min(asked or limit, room)


def _sampling(body: ChatRequest, gen: Generator) -> SamplingParams:
    """The request's temperature and top_p; what it leaves out comes from the model's generation config."""
    fmt = gen.prompt_format
    temperature = fmt.default_temperature if body.temperature is None else body.temperature
    top_p = (fmt.top_p if fmt.do_sample else 1.0) if body.top_p is None else body.top_p
    return SamplingParams(temperature, top_p, body.seed)


@router.post("/v1/chat/completions")
async def chat_completions(body: ChatRequest, request: Request) -> Any:
    st = _state(request)
    scheduler = st.lookup(body.model, st.chat, "chat completions (/v1/chat/completions)")
    gen = scheduler.generator
    prompt = await _chat_prompt(body, gen, st)
    budget = _new_token_budget(body, gen.prompt_length(prompt), gen, st)
    job = GenerationRequest(prompt=prompt, params=_sampling(body, gen), max_new_tokens=budget,
                            stop=body.stop_strings())
    scheduler.submit(job)
    head = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "created": int(time.time()), "model": body.model}
    timeout = st.config.request_timeout_s
    if body.stream:
        usage = body.stream_options is not None and body.stream_options.include_usage
        return StreamingResponse(_sse(job, head, usage, timeout), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})
    try:
        while True:
            event = await asyncio.wait_for(job.events.get(), timeout)
            if isinstance(event, APIError):
                raise event
            if isinstance(event, Finished):
                break
    except asyncio.TimeoutError:
        raise APIError(504, f"request timed out after {timeout} s (request_timeout_s)", type="timeout",
                       code="timeout") from None
    finally:
        job.cancel()
    return JSONResponse({
        **head, "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": event.text},
                     "finish_reason": event.reason, "logprobs": None}],
        "usage": _chat_usage(event),
    })


def _chat_usage(done: Finished) -> dict[str, int]:
    return {"prompt_tokens": done.prompt_tokens, "completion_tokens": done.completion_tokens,
            "total_tokens": done.prompt_tokens + done.completion_tokens}


def _chunk(head: dict[str, Any], delta: dict[str, Any], finish: str | None = None) -> str:
    choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
    return f"data: {json.dumps({**head, 'object': 'chat.completion.chunk', 'choices': [choice]})}\n\n"


async def _sse(job: GenerationRequest, head: dict[str, Any], usage: bool, timeout: float) -> AsyncIterator[str]:
    """Server-sent events of a streamed completion, ending with ``data: [DONE]``.

    When the client disconnects, Starlette cancels this generator; ``finally`` then cancels the job,
    and the scheduler drops the sequence at its next step, freeing the slot.
    """
    deadline = time.monotonic() + timeout
    try:
        yield _chunk(head, {"role": "assistant", "content": ""})
        while True:
            try:
                event = await asyncio.wait_for(job.events.get(), max(deadline - time.monotonic(), 0.0))
            except asyncio.TimeoutError:
                event = APIError(504, f"request timed out after {timeout} s", type="timeout", code="timeout")
            if isinstance(event, Delta):
                yield _chunk(head, {"content": event.text})
                continue
            if isinstance(event, APIError):
                yield f"data: {json.dumps(event.body())}\n\n"
                break
            if event.text.startswith(job.sent) and len(event.text) > len(job.sent):
                yield _chunk(head, {"content": event.text[len(job.sent):]})
            yield _chunk(head, {}, event.reason)
            if usage:
                yield f"data: {json.dumps({**head, 'object': 'chat.completion.chunk', 'choices': [], 'usage': _chat_usage(event)})}\n\n"
            break
        yield "data: [DONE]\n\n"
    finally:
        job.cancel()
