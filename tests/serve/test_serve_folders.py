"""`--model DIR` for the compressed and multimodal folders: an int8 classifier (`hybridformer quantize`)
serves classify and embeddings, a saved multimodal model and its int8 form serve chat; each through
the real server equals the loaded model alone; a folder's generation config sets the server's default
temperature."""

from __future__ import annotations

from pathlib import Path

import httpx
import torch

from hybridformer.data import minilm_tokenizer
from hybridformer.recipes.quantize import quantize_folder
from hybridformer.serve import ServeConfig
from hybridformer.serve.models import load_served_model
from hybridformer.serve.sampling import SamplingParams
from hybridformer.models import multimodal_tiny
from hybridformer.models.prompt_format import PromptFormat, decoder_prompt_format, save_prompt_format
from hybridformer.registry import save_model
from serve_helpers import decode_alone, greedy_alone, start_server


def test_an_int8_classifier_folder_serves_classify_and_embeddings(classifier_dir: Path, tmp_path: Path):
    quantize_folder(classifier_dir, tmp_path / "int8")  # dynamic int8, unsmoothed (no calibration data here)
    served = load_served_model(f"q={tmp_path / 'int8'}", ServeConfig())
    assert served.capabilities() == ["classify", "embeddings"]
    clf = served.classifier
    assert sum("quantized" in type(m).__module__ for m in clf.model.modules()) >= 6 * 4  # int8 layers in every block
    text = "an int8 model answers like the one it was loaded as"
    with start_server([served]) as s:
        r = httpx.post(s.url + "/v1/classify", json={"model": "q", "input": text}, timeout=60)
        e = httpx.post(s.url + "/v1/embeddings", json={"model": "q", "input": text}, timeout=60)
    assert r.status_code == 200 and e.status_code == 200, r.text + e.text
    ids = torch.tensor([clf.tokenizer(text)["input_ids"]])
    with torch.no_grad():
        alone = torch.softmax(clf.model(ids).logits, -1)[0]
    got = r.json()["data"][0]["probabilities"]
    torch.testing.assert_close(torch.tensor([got[n] for n in clf.label_names]), alone, atol=1e-5, rtol=1e-4)
    assert len(e.json()["data"][0]["embedding"]) == 384


def test_multimodal_folders_float_and_int8_serve_chat(tmp_path: Path):
    torch.manual_seed(0)
    save_model(multimodal_tiny(video=False), tmp_path / "mm", tokenizer=minilm_tokenizer())
    quantize_folder(tmp_path / "mm", tmp_path / "mm-int8")
    assert {"chat_template.jinja", "generation_config.json"} <= {p.name for p in (tmp_path / "mm-int8").iterdir()}
    body = {"max_tokens": 5, "temperature": 0, "messages": [{"role": "user", "content": "hello there"}]}
    for name in ("mm", "mm-int8"):
        served = load_served_model(str(tmp_path / name), ServeConfig())
        assert served.name == name and served.capabilities() == ["chat"]
        with start_server([served]) as s:
            r = httpx.post(s.url + "/v1/chat/completions", json={**body, "model": name}, timeout=60)
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"] == greedy_alone(served.generator, "hello there", [], 5)


def test_a_folders_generation_config_sets_the_default_temperature_and_a_request_overrides_it(tmp_path: Path):
    torch.manual_seed(0)
    model, tok = multimodal_tiny(video=False), minilm_tokenizer()
    save_model(model, tmp_path / "old", tokenizer=tok)  # no prompt format: the training format, greedy
    save_model(model, tmp_path / "hot", tokenizer=tok)
    sampling = PromptFormat(decoder_prompt_format(tok, model.config.decoder).chat_template, do_sample=True,
                            temperature=1.3, top_p=0.8, max_new_tokens=6)
    save_prompt_format(tmp_path / "hot", sampling, model.config.decoder)
    old = load_served_model(f"old={tmp_path / 'old'}", ServeConfig())
    hot = load_served_model(f"hot={tmp_path / 'hot'}", ServeConfig())
    ask = {"messages": [{"role": "user", "content": "a photo of"}], "seed": 5}
    with start_server([old, hot]) as s:
        def text(**body):
            r = httpx.post(s.url + "/v1/chat/completions", json={**ask, **body}, timeout=60)
            assert r.status_code == 200, r.text
            return r.json()["choices"][0]["message"]["content"]

        assert text(model="old", max_tokens=6) == greedy_alone(old.generator, "a photo of", [], 6)
        assert text(model="hot") == decode_alone(hot.generator, "a photo of", [], 6, SamplingParams(1.3, 0.8, 5))
        assert text(model="hot", temperature=0, max_tokens=6) == greedy_alone(hot.generator, "a photo of", [], 6)
        assert text(model="hot", temperature=0.5, top_p=1.0, max_tokens=6) == decode_alone(
            hot.generator, "a photo of", [], 6, SamplingParams(0.5, 1.0, 5))
