"""The server's event loop and HTTP parser: uvloop + httptools when installed, asyncio + h11 on request."""

from __future__ import annotations

import importlib.util

import httpx
import pytest

from hybridformer.config import ConfigError
from hybridformer.serve.server import http_stack
from serve_helpers import start_server

FAST = all(importlib.util.find_spec(m) is not None for m in ("uvloop", "httptools"))


def test_asyncio_is_asyncio_and_auto_takes_the_fast_stack_when_installed():
    assert http_stack("asyncio") == ("asyncio", "h11")
    assert http_stack("auto") == (("uvloop", "httptools") if FAST else ("asyncio", "h11"))


def test_fast_without_uvloop_says_what_to_install(monkeypatch, caplog):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "uvloop" else real(name, *a))
    with pytest.raises(ConfigError, match="http_stack: fast needs uvloop"):
        http_stack("fast")
    assert http_stack("auto") == ("asyncio", "h11")
    assert "uvloop not installed" in caplog.text


@pytest.mark.parametrize("stack", ["asyncio", "fast"])
def test_a_server_on_either_stack_answers(models, stack):
    if stack == "fast" and not FAST:
        pytest.skip("uvloop and httptools are not installed (make install pins them)")
    with start_server(models[:1], http_stack=stack) as s:
        r = httpx.post(s.url + "/v1/classify", json={"model": "clf", "input": "fine"}, timeout=30)
        bad = httpx.post(s.url + "/v1/classify", content=b'{"model": ', timeout=30,
                         headers={"content-type": "application/json"})
    assert r.status_code == 200 and r.json()["data"][0]["label"] in ("negative", "neutral", "positive")
    assert bad.status_code == 400
