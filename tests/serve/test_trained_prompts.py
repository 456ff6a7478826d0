"""A briefly pretrained captioning model answers as it was trained, wherever it is asked: the same
held-out image with no text gives the same greedy caption through ``hybridformer generate``, the
real server (official ``openai`` client, temperature 0 and no temperature at all) and the
playground page in a headless browser, and that caption is what the model gives ``[bos]`` alone
with the image (its training format). An explicit temperature in a request still wins."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import openai
import pytest
import torch
from PIL import Image

from hybridformer.cli import main
from hybridformer.serve import ServeConfig
from hybridformer.serve.models import load_served_model
from hybridformer.serve.sampling import SamplingParams
from hybridformer.models import MultimodalModel
from serve_helpers import browser_or_skip, decode_alone, greedy_alone, start_server

MAX_TOKENS = 20
pytestmark = pytest.mark.slow  # the pretraining takes ~30 s on 2 cores; tests/models/test_prompt_format.py and
# test_serve_folders.py keep fast real tests of the format and of the server's defaults


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """``hybridformer pretrain`` (captioning, 30 steps) and a held-out MNIST digit as a PNG."""
    from hybridformer.data.image_text import load_image_text

    run = tmp_path_factory.mktemp("mm")
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        assert main(["pretrain", "--objectives", "caption", "--model", "tiny", "--data.task", "mnist5k",
                     "--out-dir", str(run), "--train.max_steps", "30", "--train.batch_size", "16", "--train.lr", "2e-3",
                     "--train.progress_bar", "false", "--train.tensorboard", "false"]) == 0
    digit = load_image_text("mnist5k", 0).test.images[0]  # (1, 28, 28) uint8, never trained on
    Image.fromarray(digit[0].numpy()).save(run / "digit.png")
    (run / "stderr.txt").write_text(stderr.getvalue())
    return {"model": run / "model", "image": run / "digit.png", "stderr": run / "stderr.txt"}


@pytest.fixture(scope="module")
def generated(trained) -> str:
    """The caption ``hybridformer generate --model DIR --image digit.png`` prints (no --prompt)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["generate", "--model", str(trained["model"]), "--image", str(trained["image"])]) == 0
    return out.getvalue().strip()


@pytest.fixture(scope="module")
def server(trained):
    with start_server([load_served_model(f"mm={trained['model']}", ServeConfig())]) as s:
        yield s


def _image_only(image: Path) -> list[dict]:
    import base64

    url = "data:image/png;base64," + base64.b64encode(image.read_bytes()).decode()
    return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]


def test_the_folder_carries_its_prompt_format_and_pretrain_said_each_phase(trained):
    names = {p.name for p in trained["model"].iterdir()}
    assert {"chat_template.jinja", "generation_config.json"} <= names
    lines = trained["stderr"].read_text().splitlines()
    starts = ["pretraining with caption on ", "model: tiny, ", "training: 30 steps ",
              f"then: the model (with its prompt format) to {trained['model']}", "step 1/30", "step 30/30"]
    at = [next(i for i, line in enumerate(lines) if line.startswith(start)) for start in starts]
    assert at == sorted(at), lines


def test_generate_captions_as_trained(trained, generated):
    from hybridformer.data.images import load_image
    from hybridformer.data.multimodal_collate import PixelSpec, stack_pixels
    from hybridformer.data.tokenizer import load_tokenizer

    assert generated, "the trained model gave an empty caption"
    model = MultimodalModel.from_pretrained(trained["model"]).eval()
    pixels = stack_pixels([load_image(trained["image"], channels=3)], PixelSpec(image_size=32, channels=3))
    out = model.generate(images=pixels, max_new_tokens=MAX_TOKENS)  # [bos] alone: the training format
    tokens = out.sequences[0, : int(out.lengths[0])].tolist()
    assert generated == load_tokenizer(trained["model"]).decode(tokens, skip_special_tokens=True)


def test_the_server_answers_an_image_alone_with_the_same_caption(server, trained, generated):
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=60)
    messages = _image_only(trained["image"])
    greedy = client.chat.completions.create(model="mm", messages=messages, temperature=0, max_tokens=MAX_TOKENS)
    default = client.chat.completions.create(model="mm", messages=messages)  # the folder's: greedy, 20 tokens
    assert greedy.choices[0].message.content == generated
    assert default.choices[0].message.content == generated


def test_an_explicit_temperature_wins(server, trained):
    from hybridformer.serve.images import decode_image

    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=60)
    messages = _image_only(trained["image"])
    got = client.chat.completions.create(model="mm", messages=messages, temperature=2.0, seed=3, max_tokens=MAX_TOKENS)
    gen = load_served_model(str(trained["model"]), ServeConfig()).generator
    image = decode_image(messages[0]["content"][0]["image_url"]["url"], max_bytes=10**6, max_pixels=10**6, param="x")
    sampled = decode_alone(gen, "", [image], MAX_TOKENS, SamplingParams(temperature=2.0, seed=3))
    assert got.choices[0].message.content == sampled
    assert sampled != greedy_alone(gen, "", [image], MAX_TOKENS), "seed 3 happens to sample the greedy caption"


def test_the_playground_captions_an_image_alone_as_generate_does(server, trained, generated):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    browser = browser_or_skip()
    try:
        browser.get(server.url + "/")
        wait = WebDriverWait(browser, 60)
        wait.until(lambda b: "serving:" in b.find_element(By.ID, "models-line").text)
        browser.find_element(By.ID, "image").send_keys(str(trained["image"]))
        wait.until(lambda b: b.find_element(By.ID, "preview").is_displayed())
        browser.find_element(By.ID, "send").click()  # no text, no temperature, no max tokens: the model's defaults
        wait.until(ec.text_to_be_present_in_element((By.ID, "chat-status"), "done"))
        assert browser.find_element(By.ID, "answer").text.strip() == generated
    finally:
        browser.quit()
