"""The multimodal model behind the server's Generator interface: concurrent chats (with and without an
image) through the real server give what the model gives each prompt alone. Runs where the build has
the multimodal model (``hybridformer.models.multimodal_tiny``)."""

from __future__ import annotations

import asyncio

import httpx

from hybridformer.data import minilm_tokenizer
from serve_helpers import greedy_alone, png_data_url, start_server



def test_concurrent_chats_equal_each_prompt_alone():
    from hybridformer.serve.images import decode_image
    from hybridformer.serve.models import ServedModel, tiny_generator
    from hybridformer.serve.multimodal import MultimodalGenerator

    gen = tiny_generator(minilm_tokenizer())
    assert isinstance(gen, MultimodalGenerator)
    image = png_data_url(40, 30, (10, 200, 90))
    asks = [("describe", image), ("hello there", None), ("what colour is it", image)]

    def body(text, url):
        content = [{"type": "text", "text": text}] + ([{"type": "image_url", "image_url": {"url": url}}] if url else [])
        return {"model": "mm", "max_tokens": 6, "temperature": 0, "messages": [{"role": "user", "content": content}]}

    with start_server([ServedModel("mm", generator=gen)], max_wait_ms=50) as s:
        async def go():
            async with httpx.AsyncClient(base_url=s.url, timeout=60) as c:
                return await asyncio.gather(*(c.post("/v1/chat/completions", json=body(t, u)) for t, u in asks))

        responses = asyncio.run(go())
    for (text, url), r in zip(asks, responses):
        assert r.status_code == 200, r.text
        images = [decode_image(url, max_bytes=10**6, max_pixels=10**6, param="x")] if url else []
        assert r.json()["choices"][0]["message"]["content"] == greedy_alone(gen, text, images, 6)
