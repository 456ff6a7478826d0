"""The prompt format a model folder carries, in Hugging Face's files, so every caller asks the model
the way it was trained.

- ``chat_template.jinja`` (beside the tokenizer, as transformers >= 4.50 writes it; an older
  folder's ``tokenizer_config.json`` ``"chat_template"`` is read too): a Jinja template turning
  OpenAI-style messages into the prompt text, rendered as transformers renders it (a sandboxed
  Jinja environment, ``trim_blocks`` / ``lstrip_blocks``), then tokenized without added special tokens.
- ``generation_config.json``: the default decoding (``do_sample``, ``temperature``, ``top_p``,
  ``max_new_tokens`` and the decoder's special token ids), as ``transformers.GenerationConfig`` writes it.

The multimodal decoder is trained on ``<bos> text`` with the image as cross-attention context:
captions as ``<bos> caption`` (captioning, fused MLM), VQA questions as ``<bos> question``. It has no
roles or turns, so its template (:func:`decoder_template`) renders the text of the last user message
after ``<bos>``; an image with no text renders ``<bos>`` alone, which asks for a caption. Folders
saved before these files existed get that template and greedy decoding (:func:`read_prompt_format`).

``generate``, the server (chat and the playground) and the VQA evaluation build their prompts here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

__all__ = ["PromptFormat", "decoder_template", "decoder_prompt_format", "read_prompt_format", "save_prompt_format",
           "save_decoder_prompt_format", "CHAT_TEMPLATE_FILE", "GENERATION_CONFIG_FILE"]

CHAT_TEMPLATE_FILE = "chat_template.jinja"
GENERATION_CONFIG_FILE = "generation_config.json"
_GENERATION_KEYS = ("do_sample", "temperature", "top_p", "max_new_tokens")
"""The keys of ``generation_config.json`` a :class:`PromptFormat` holds (transformers' names)."""

_DECODER_TEMPLATE = """\
{#- hybridformer's multimodal decoder was trained on "<bos> text" with the image as its context
    (captions: "<bos> caption", VQA: "<bos> question"). It knows no roles or turns: the prompt is
    the text of the last user message (its text parts joined by spaces) after <bos>; an image with
    no text renders <bos> alone, which asks for a caption. -#}
{%- set ns = namespace(text="") -%}
{%- for message in messages if message.role == "user" -%}
  {%- if message.content is string -%}
    {%- set ns.text = message.content -%}
  {%- else -%}
    {%- set ns.text = message.content | selectattr("type", "equalto", "text") | map(attribute="text") | join(" ") -%}
  {%- endif -%}
{%- endfor -%}
"""


def decoder_template(bos_token: str) -> str:
    """The chat template of the multimodal decoder (see the module docstring), ``bos_token`` written
    in, so the template alone renders the whole prompt (also through ``tokenizer.apply_chat_template``)."""
    if "{" in bos_token or "}" in bos_token:
        raise ValueError(f"bos_token: {bos_token!r} cannot be written into a Jinja template")
    return _DECODER_TEMPLATE + bos_token + "{{ ns.text | trim }}"


@dataclass
class PromptFormat:
    """How a model is prompted and decoded by default."""

    chat_template: str
    """Jinja template: ``messages`` (OpenAI-style dicts: ``role``, ``content`` a string or a list of
    ``{"type": "text", "text": ...}`` / ``{"type": "image"}`` parts) -> the prompt text."""
    do_sample: bool = False
    """Default decoding: False = greedy (temperature 0); True = sample with ``temperature`` / ``top_p``."""
    temperature: float = 1.0
    """Sampling temperature when ``do_sample``."""
    top_p: float = 1.0
    """Nucleus mass when ``do_sample`` (1 = off)."""
    max_new_tokens: int | None = None
    """Default most generated tokens (None: the caller's own default)."""
    source: str = "the built-in template of the decoder's training format"
    """Where the template came from (named in errors)."""

    @property
    def default_temperature(self) -> float:
        """The server's temperature for a request that names none: 0 (greedy) unless ``do_sample``."""
        return self.temperature if self.do_sample else 0.0

    @cached_property
    def _template(self) -> Any:
        from jinja2 import TemplateError
        from jinja2.ext import loopcontrols
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        # transformers' own environment (``render_jinja_template``), so its renders equal ours.
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
        try:
            return env.from_string(self.chat_template)
        except TemplateError as err:
            raise ValueError(f"{self.source}: invalid chat template: {err}") from None

    def render(self, messages: list[dict[str, Any]]) -> str:
        """The prompt text of ``messages``.

        Raises:
            ValueError: the template fails on them (names the template's file).
        """
        from jinja2 import TemplateError

        try:
            return self._template.render(messages=messages, add_generation_prompt=True)
        except TemplateError as err:
            raise ValueError(f"{self.source}: the chat template failed: {err}") from None

    def prompt_ids(self, tokenizer: Any, messages: list[dict[str, Any]]) -> list[int]:
        """The token ids of the rendered prompt (special tokens only where the template writes them)."""
        return list(tokenizer(self.render(messages), add_special_tokens=False, verbose=False)["input_ids"])


CAPTION_MAX_NEW_TOKENS = 20
"""Default most generated tokens of the multimodal decoder (captions and answers are short)."""


def decoder_prompt_format(tokenizer: Any, decoder: Any) -> PromptFormat:
    """The multimodal decoder's format (:func:`decoder_template` with its ``bos_token_id``, greedy,
    at most :data:`CAPTION_MAX_NEW_TOKENS`); ``decoder`` is its :class:`~hybridformer.fusion.DecoderConfig`."""
    return PromptFormat(decoder_template(tokenizer.convert_ids_to_tokens(decoder.bos_token_id)),
                        max_new_tokens=CAPTION_MAX_NEW_TOKENS)


def _read_template(folder: Path) -> tuple[str, str] | None:
    """(template, its file) from ``chat_template.jinja`` or ``tokenizer_config.json``; None if neither."""
    jinja = folder / CHAT_TEMPLATE_FILE
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8"), str(jinja)
    config = folder / "tokenizer_config.json"
    if not config.is_file():
        return None
    template = json.loads(config.read_text(encoding="utf-8")).get("chat_template")
    if isinstance(template, list):  # transformers' named templates: [{"name": ..., "template": ...}]
        template = next((t.get("template") for t in template if t.get("name") == "default"), None)
    return (template, str(config)) if isinstance(template, str) else None


def read_prompt_format(folder: str | Path, default: PromptFormat) -> PromptFormat:
    """The prompt format saved in ``folder``; what it lacks comes from ``default`` (older folders).

    Raises:
        ValueError: ``generation_config.json`` is not a JSON object, or holds a bad value (names it).
    """
    folder = Path(folder)
    found = _read_template(folder)
    template, source = found if found is not None else (default.chat_template, default.source)
    values: dict[str, Any] = {}
    file = folder / GENERATION_CONFIG_FILE
    if file.is_file():
        try:
            values = json.loads(file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{file}: invalid JSON ({err})") from None
        if not isinstance(values, dict):
            raise ValueError(f"{file}: expected a JSON object")
    fmt = PromptFormat(template, **{k: values.get(k, getattr(default, k)) for k in _GENERATION_KEYS}, source=source)
    number = (int, float)
    if not isinstance(fmt.do_sample, bool):
        raise ValueError(f"{file}: do_sample must be true or false, got {fmt.do_sample!r}")
    if not (isinstance(fmt.temperature, number) and 0.0 < fmt.temperature <= 2.0):
        raise ValueError(f"{file}: temperature must be in (0, 2], got {fmt.temperature!r}")
    if not (isinstance(fmt.top_p, number) and 0.0 < fmt.top_p <= 1.0):
        raise ValueError(f"{file}: top_p must be in (0, 1], got {fmt.top_p!r}")
    if fmt.max_new_tokens is not None and not (isinstance(fmt.max_new_tokens, int) and fmt.max_new_tokens >= 1):
        raise ValueError(f"{file}: max_new_tokens must be an integer >= 1, got {fmt.max_new_tokens!r}")
    return fmt


def save_prompt_format(folder: str | Path, fmt: PromptFormat, decoder: Any) -> None:
    """Write ``chat_template.jinja`` and ``generation_config.json`` (with ``decoder``'s special token
    ids, a :class:`~hybridformer.fusion.DecoderConfig`) into ``folder``."""
    from hybridformer.io import write_json, write_text

    folder = Path(folder)
    write_text(folder / CHAT_TEMPLATE_FILE, fmt.chat_template)
    config: dict[str, Any] = {"bos_token_id": decoder.bos_token_id, "eos_token_id": decoder.eos_token_id,
                              "pad_token_id": decoder.pad_token_id, "do_sample": fmt.do_sample}
    if fmt.do_sample:
        config.update(temperature=fmt.temperature, top_p=fmt.top_p)
    if fmt.max_new_tokens is not None:
        config["max_new_tokens"] = fmt.max_new_tokens
    write_json(folder / GENERATION_CONFIG_FILE, config)


def save_decoder_prompt_format(folder: str | Path, tokenizer: Any, decoder: Any) -> PromptFormat:
    """Write the format of a decoder trained on ``<bos> text`` (captions, questions) into ``folder``."""
    fmt = decoder_prompt_format(tokenizer, decoder)
    save_prompt_format(folder, fmt, decoder)
    return fmt
