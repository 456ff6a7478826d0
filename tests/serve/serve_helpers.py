"""Helpers of the serving tests: start a server, read its metrics, make images, check error bodies."""

from __future__ import annotations

import base64
import io
import shutil

import httpx
import torch
from prometheus_client.parser import text_string_to_metric_families

from hybridformer.serve import ServeConfig
from hybridformer.serve.models import ServedModel
from hybridformer.serve.server import ServerThread


def start_server(models: list[ServedModel], **config) -> ServerThread:
    return ServerThread(models, ServeConfig(port=0, **config)).start()


def metric(client_or_url, name: str, **labels) -> list[tuple[str, dict, float]]:
    """Samples (name, labels, value) of metric family `name` whose labels include `labels`."""
    text = (httpx.get(client_or_url + "/metrics") if isinstance(client_or_url, str) else client_or_url.get("/metrics")).text
    out = []
    for family in text_string_to_metric_families(text):
        if family.name != name:
            continue
        for s in family.samples:
            if all(s.labels.get(k) == v for k, v in labels.items()):
                out.append((s.name, s.labels, s.value))
    return out


def png_data_url(width: int = 24, height: int = 16, color=(200, 30, 30)) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def assert_openai_error(response: httpx.Response, status: int, code: str | None = None, param: str | None = None):
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    assert body["error"]["message"], body
    if code is not None:
        assert body["error"]["code"] == code, body
    if param is not None:
        assert body["error"]["param"] == param, body
    return body["error"]


def greedy_alone(gen, text: str, images: list, max_tokens: int) -> str:
    """What a Generator answers to one user ``text`` (and ``images``) alone, greedily, outside the server."""
    from hybridformer.serve.sampling import SamplingParams

    return decode_alone(gen, text, images, max_tokens, SamplingParams(temperature=0.0))


def decode_alone(gen, text: str, images: list, max_tokens: int, params) -> str:
    """What a Generator answers to one user ``text`` (and ``images``) alone with sampling ``params``."""
    from hybridformer.serve.sampling import sample

    state, logits = gen.prefill([gen.chat_prompt([("user", text)], images)])
    tokens = []
    for _ in range(max_tokens):
        token = sample(logits, [params])
        if int(token) in gen.eos_token_ids:
            break
        tokens.append(int(token))
        logits = gen.step(state, token)
        assert torch.is_tensor(logits), f"Generator.step returned {type(logits).__name__}, not logits"
    return gen.detokenize(tokens)


def browser_or_skip():
    """A headless Chromium (selenium), or skip the test when none is installed."""
    import pytest

    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.skip("no headless browser: install Debian's chromium and chromium-driver "
                    "(apt-get install -y chromium chromium-driver) to run the playground test")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(arg)
    return webdriver.Chrome(service=webdriver.ChromeService(executable_path=driver), options=options)
