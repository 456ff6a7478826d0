"""The official `openai` Python client against the real server: models, embeddings, chat, streaming,
an image part, errors and 429 retries."""

from __future__ import annotations

import httpx
import openai
import pytest
import torch

from serve_helpers import png_data_url, start_server


@pytest.fixture
def oai(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=60)


def test_models_and_embeddings(oai, client):
    assert {m.id for m in oai.models.list()} == {"clf", "minilm", "tiny"}
    # The client asks for base64 by default and decodes it; the floats must match ours.
    got = oai.embeddings.create(model="minilm", input=["a cat", "a dog"])
    ours = client.post("/v1/embeddings", json={"model": "minilm", "input": ["a cat", "a dog"]}).json()
    assert len(got.data) == 2 and got.usage.prompt_tokens > 0
    for a, b in zip(got.data, ours["data"]):
        torch.testing.assert_close(torch.tensor(a.embedding), torch.tensor(b["embedding"]), atol=1e-6, rtol=0)
    floats = oai.embeddings.create(model="minilm", input="a cat", encoding_format="float")
    torch.testing.assert_close(torch.tensor(floats.data[0].embedding), torch.tensor(got.data[0].embedding))


def test_chat_streaming_equals_the_whole_answer(oai):
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "say something"}]
    whole = oai.chat.completions.create(model="tiny", messages=messages, max_tokens=12, temperature=0)
    assert whole.choices[0].finish_reason in ("length", "stop")
    assert whole.usage.completion_tokens <= 12
    stream = oai.chat.completions.create(model="tiny", messages=messages, max_tokens=12, temperature=0, stream=True,
                                         stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == whole.choices[0].finish_reason


def test_chat_with_an_image_part(oai):
    content = [{"type": "text", "text": "describe"}, {"type": "image_url", "image_url": {"url": png_data_url()}}]
    r = oai.chat.completions.create(model="tiny", messages=[{"role": "user", "content": content}], max_tokens=8,
                                    temperature=0)
    assert r.choices[0].message.content and r.usage.completion_tokens >= 1


def test_sampling_with_a_seed_is_reproducible(oai):
    kwargs = dict(model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=10, temperature=1.0,
                  top_p=0.9, seed=7)
    a = oai.chat.completions.create(**kwargs).choices[0].message.content
    b = oai.chat.completions.create(**kwargs).choices[0].message.content
    assert a == b


def test_errors_surface_as_the_clients_exceptions(oai):
    with pytest.raises(openai.NotFoundError) as info:
        oai.embeddings.create(model="nope", input="x")
    assert info.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as info:
        oai.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "word " * 600}])
    assert info.value.code == "context_length_exceeded"


def test_the_client_retries_a_429_and_gets_through(models):
    with start_server(models, max_queue=1, max_batch_size=1, max_wait_ms=0) as s:
        client = openai.OpenAI(base_url=s.url + "/v1", api_key="unused", max_retries=8, timeout=60)
        import concurrent.futures

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda i: client.embeddings.create(model="minilm", input=f"text {i}"), range(8)))
        assert all(len(r.data) == 1 for r in results)
        rejected = [x for x in httpx.get(s.url + "/metrics").text.splitlines()
                    if x.startswith('hybridformer_requests_total{endpoint="/v1/embeddings",status="429"}')]
        assert rejected and float(rejected[0].split()[-1]) > 0, "no request was ever refused: the test proves nothing"
