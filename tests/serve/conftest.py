"""Real servers on 127.0.0.1 (uvicorn in a thread) over real models: a classifier fine-tune folder
built from the bundled MiniLM (random head, tokenizer saved beside it), MiniLM for embeddings, and
the tiny random causal LM for chat. Models are loaded once per session; servers are cheap."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import torch

from hybridformer.data import minilm_path, minilm_tokenizer
from hybridformer.serve import ServeConfig
from hybridformer.serve.models import ServedModel, load_served_model
from hybridformer.encoders import TextEncoder
from hybridformer.models import TextClassifier
from hybridformer.registry import save_model
from serve_helpers import start_server

LABELS = ["negative", "neutral", "positive"]


@pytest.fixture(scope="session")
def classifier_dir(tmp_path_factory) -> Path:
    """A folder as `hybridformer finetune` writes it: TextClassifier + tokenizer."""
    folder = tmp_path_factory.mktemp("clf")
    torch.manual_seed(0)
    save_model(TextClassifier(TextEncoder.from_pretrained(minilm_path()), 3, label_names=LABELS), folder)
    minilm_tokenizer().save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="session")
def models(classifier_dir) -> list[ServedModel]:
    cfg = ServeConfig()
    return [
        load_served_model(f"clf={classifier_dir}", cfg),
        load_served_model(f"minilm={minilm_path()}", cfg),
        load_served_model("tiny", cfg),
    ]


@pytest.fixture(scope="module")
def server(models):
    """A server with a 50 ms batching window, so concurrent requests visibly share batches."""
    s = start_server(models, max_wait_ms=50.0)
    yield s
    s.stop()


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c
