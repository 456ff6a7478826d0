"""The prompt format in a model folder (Hugging Face's files): transformers reads what we write and
renders our template as we do; folders without the files get the decoder's training format, greedy."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from transformers import AutoTokenizer, GenerationConfig

from hybridformer.data import minilm_tokenizer
from hybridformer.fusion import DecoderConfig
from hybridformer.models.prompt_format import (CHAT_TEMPLATE_FILE, GENERATION_CONFIG_FILE, PromptFormat,
                                               decoder_prompt_format, read_prompt_format, save_decoder_prompt_format,
                                               save_prompt_format)

DECODER = DecoderConfig(vocab_size=30522, bos_token_id=101, eos_token_id=102, pad_token_id=0)
CHATS = [
    [{"role": "user", "content": ""}],
    [{"role": "user", "content": [{"type": "image"}]}],
    [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "what digit"}, {"type": "text", "text": "is this?"}]}],
    [{"role": "system", "content": "be brief"}, {"role": "user", "content": "a photo"},
     {"role": "assistant", "content": "of a cat"}, {"role": "user", "content": " is this a seven? "}],
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fmt")
    tok = minilm_tokenizer()
    tok.save_pretrained(str(path))
    save_decoder_prompt_format(path, tok, DECODER)
    return path


def test_the_template_renders_bos_and_the_last_user_text():
    fmt = decoder_prompt_format(minilm_tokenizer(), DECODER)
    assert [fmt.render(chat) for chat in CHATS] == ["[CLS]", "[CLS]", "[CLS]what digit is this?", "[CLS]is this a seven?"]
    tok = minilm_tokenizer()
    # An image with no text is [bos] alone: what captioning trained the decoder to continue.
    assert fmt.prompt_ids(tok, CHATS[1]) == [101]
    assert fmt.prompt_ids(tok, CHATS[3]) == [101, *tok("is this a seven?", add_special_tokens=False)["input_ids"]]


def test_transformers_reads_the_folder_as_we_do(folder: Path):
    assert sorted(p.name for p in folder.iterdir()) == [CHAT_TEMPLATE_FILE, GENERATION_CONFIG_FILE, "tokenizer.json",
                                                         "tokenizer_config.json"]
    ours = read_prompt_format(folder, PromptFormat("unused", do_sample=True))
    hf_tok = AutoTokenizer.from_pretrained(str(folder))
    for chat in CHATS:
        assert hf_tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) == ours.render(chat)
    hf = GenerationConfig.from_pretrained(str(folder))
    assert (hf.do_sample, hf.bos_token_id, hf.eos_token_id, hf.pad_token_id, hf.max_new_tokens) == (False, 101, 102, 0, 20)
    assert ours.default_temperature == 0.0 and not ours.do_sample


def test_a_sampling_config_round_trips_and_sets_the_default_temperature(tmp_path: Path):
    save_prompt_format(tmp_path, PromptFormat("{{ messages[0].content }}", do_sample=True, temperature=0.7, top_p=0.9), DECODER)
    hf = GenerationConfig.from_pretrained(str(tmp_path))
    assert (hf.do_sample, hf.temperature, hf.top_p) == (True, 0.7, 0.9)
    fmt = read_prompt_format(tmp_path, decoder_prompt_format(minilm_tokenizer(), DECODER))
    assert (fmt.default_temperature, fmt.top_p, fmt.max_new_tokens) == (0.7, 0.9, 20)  # the last from the default
    assert fmt.render([{"role": "user", "content": "hi"}]) == "hi"


def test_an_older_folder_gets_the_training_format_and_greedy(tmp_path: Path):
    minilm_tokenizer().save_pretrained(str(tmp_path))  # no chat template, no generation config
    default = decoder_prompt_format(minilm_tokenizer(), DECODER)
    fmt = read_prompt_format(tmp_path, default)
    assert fmt.chat_template == default.chat_template and fmt.default_temperature == 0.0
    assert fmt.render(CHATS[0]) == "[CLS]"


def test_a_template_in_tokenizer_config_is_read(tmp_path: Path):
    tok = minilm_tokenizer()
    tok.save_pretrained(str(tmp_path))
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    config["chat_template"] = [{"name": "default", "template": "Q: {{ messages[-1].content }}"}]
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    fmt = read_prompt_format(tmp_path, decoder_prompt_format(tok, DECODER))
    assert fmt.render([{"role": "user", "content": "why"}]) == "Q: why"


@pytest.mark.parametrize(("files", "needle"), [
    ({GENERATION_CONFIG_FILE: "{not json"}, "generation_config.json: invalid JSON"),
    ({GENERATION_CONFIG_FILE: "[1]"}, "generation_config.json: expected a JSON object"),
    ({GENERATION_CONFIG_FILE: '{"do_sample": true, "temperature": 0}'}, "temperature must be in (0, 2], got 0"),
    ({GENERATION_CONFIG_FILE: '{"do_sample": "yes"}'}, "do_sample must be true or false, got 'yes'"),
    ({GENERATION_CONFIG_FILE: '{"top_p": "0.9"}'}, "top_p must be in (0, 1], got '0.9'"),
    ({GENERATION_CONFIG_FILE: '{"max_new_tokens": 0}'}, "max_new_tokens must be an integer >= 1, got 0"),
    ({CHAT_TEMPLATE_FILE: "{% for %}"}, "chat_template.jinja: invalid chat template"),
    ({CHAT_TEMPLATE_FILE: "{{ raise_me() }}"}, "chat_template.jinja: the chat template failed"),
])
def test_bad_files_are_named(tmp_path: Path, files: dict[str, str], needle: str):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(ValueError, match=re.escape(needle)):
        read_prompt_format(tmp_path, decoder_prompt_format(minilm_tokenizer(), DECODER)).render(CHATS[0])
