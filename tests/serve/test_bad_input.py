"""Every class of bad input gets a 4xx in OpenAI's error shape, naming the field, and the server goes on."""

from __future__ import annotations

import base64
import io
import json
import os
import struct
import zlib

import httpx
import pytest

from serve_helpers import assert_openai_error, png_data_url, start_server


def _chat(content, **extra) -> dict:
    return {"model": "tiny", "messages": [{"role": "user", "content": content}], "max_tokens": 4, **extra}


def _image(url: str) -> list[dict]:
    return [{"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": url}}]


def _png_bomb(width: int, height: int) -> str:
    """A valid ~100-byte PNG whose header announces width x height pixels (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    return "data:image/png;base64," + base64.b64encode(png).decode()


BAD_REQUESTS = [
    # (case, path, raw body or JSON, status, code, param)
    ("malformed JSON", "/v1/classify", b'{"model": "clf", "input": ', 400, "invalid_json", None),
    ("not an object", "/v1/embeddings", b"[1, 2, 3]", 400, "invalid_json", None),
    ("missing field", "/v1/classify", {"model": "clf"}, 400, "invalid_value", "input"),
    ("input of a wrong type", "/v1/classify", {"model": "clf", "input": 5}, 400, "invalid_value", "input"),
    ("model of a wrong type", "/v1/embeddings", {"model": 3, "input": "x"}, 400, "invalid_value", "model"),
    ("stream not a bool", "/v1/chat/completions", _chat("hi", stream="yes"), 400, "invalid_value", "stream"),
    ("temperature out of range", "/v1/chat/completions", _chat("hi", temperature=5), 400, "invalid_value",
     "temperature"),
    ("n > 1", "/v1/chat/completions", _chat("hi", n=2), 400, "invalid_value", "n"),
    ("bad role", "/v1/chat/completions", {"model": "tiny", "messages": [{"role": "robot", "content": "x"}]}, 400,
     "invalid_value", "messages[0].role"),
    ("empty input", "/v1/embeddings", {"model": "minilm", "input": []}, 400, "invalid_value", "input"),
    ("token ids outside the vocabulary", "/v1/embeddings", {"model": "minilm", "input": [101, 10**9]}, 400,
     "invalid_value", "input[0]"),
    ("unknown model", "/v1/embeddings", {"model": "gpt-17", "input": "x"}, 404, "model_not_found", "model"),
    ("model without the capability", "/v1/classify", {"model": "tiny", "input": "x"}, 400, "model_not_supported",
     "model"),
    ("too many tokens to embed", "/v1/embeddings", {"model": "minilm", "input": "word " * 600}, 400,
     "context_length_exceeded", "input[0]"),
    ("too many inputs", "/v1/classify", {"model": "clf", "input": ["x"] * 65}, 400, "too_many_inputs", "input"),
    ("chat prompt too long", "/v1/chat/completions", _chat("word " * 600), 400, "context_length_exceeded",
     "messages"),
    ("max_tokens over the limit", "/v1/chat/completions", _chat("hi", max_tokens=10_000), 400, "invalid_value",
     "max_tokens"),
    ("undecodable image", "/v1/chat/completions", _chat(_image("data:image/png;base64," +
     base64.b64encode(b"certainly not a png").decode())), 400, "invalid_image", "messages[0].content[1].image_url.url"),
    ("bad base64", "/v1/chat/completions", _chat(_image("data:image/png;base64,@@@@")), 400, "invalid_image",
     "messages[0].content[1].image_url.url"),
    ("remote image URL", "/v1/chat/completions", _chat(_image("https://example.com/cat.png")), 400,
     "invalid_image_url", "messages[0].content[1].image_url.url"),
    ("decompression bomb", "/v1/chat/completions", _chat(_image(_png_bomb(50_000, 50_000))), 400, "image_too_large",
     "messages[0].content[1].image_url.url"),
    ("image over max_image_pixels", "/v1/chat/completions", _chat(_image(_png_bomb(5000, 4000))), 400,
     "image_too_large", "messages[0].content[1].image_url.url"),
    ("too many images", "/v1/chat/completions", _chat(_image(png_data_url()) * 5), 400, "too_many_images",
     "messages"),
    ("unknown route", "/v1/completions", {"model": "tiny", "prompt": "x"}, 404, None, None),
]


@pytest.mark.parametrize("case,path,body,status,code,param", BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS])
def test_bad_input_gets_a_4xx_in_openai_shape(client, case, path, body, status, code, param):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = client.post(path, content=raw, headers={"content-type": "application/json"})
    assert_openai_error(r, status, code, param)


def test_the_server_still_answers_after_every_bad_request(client):
    for _, path, body, *_ in BAD_REQUESTS:
        client.post(path, content=body if isinstance(body, bytes) else json.dumps(body).encode(),
                    headers={"content-type": "application/json"})
    assert client.get("/health").json()["status"] == "ok"
    r = client.post("/v1/chat/completions", json=_chat(_image(png_data_url())))
    assert r.status_code == 200, r.text


def _noise_png_url(width: int, height: int) -> str:
    """A PNG of random pixels (incompressible: about width x height x 3 bytes)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.frombytes("RGB", (width, height), os.urandom(width * height * 3)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def test_image_bytes_and_body_size_limits(models):
    with start_server(models, max_image_bytes=2000, max_body_bytes=50_000) as s, httpx.Client(base_url=s.url) as c:
        assert_openai_error(c.post("/v1/chat/completions", json=_chat(_image(_noise_png_url(64, 64)))), 400,
                            "image_too_large")
        assert_openai_error(c.post("/v1/embeddings", json={"model": "minilm", "input": "x" * 60_000}), 413,
                            "body_too_large")

        def chunked():  # no Content-Length: refused once the stream passes the limit
            for _ in range(20):
                yield b"x" * 10_000

        r = c.post("/v1/embeddings", content=chunked(), headers={"content-type": "application/json"})
        assert_openai_error(r, 413, "body_too_large")
        assert c.get("/health").status_code == 200


def test_api_key(models):
    with start_server(models, api_key="s3cret") as s, httpx.Client(base_url=s.url) as c:
        body = {"model": "minilm", "input": "x"}
        assert_openai_error(c.post("/v1/embeddings", json=body), 401, "invalid_api_key")
        assert_openai_error(c.post("/v1/embeddings", json=body, headers={"Authorization": "Bearer nope"}), 401)
        assert c.post("/v1/embeddings", json=body, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert c.get("/health").status_code == 200  # probes need no key
