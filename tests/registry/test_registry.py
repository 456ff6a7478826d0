"""The registry: one folder format written by ``save_model`` and read by ``load_model`` for every
family, flavors by name, and what the commands ask it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hybridformer.compression import quantization_of, quantize_multimodal
from hybridformer.data import minilm_path, minilm_tokenizer
from hybridformer.encoders import TextEncoder
from hybridformer.models import MultimodalModel, TextClassifier
from hybridformer.registry import ARCHITECTURES, FLAVORS, architecture_at, family_of, load_model, save_model


def test_every_architecture_writes_the_same_schema(tmp_path: Path) -> None:
    torch.manual_seed(0)
    models = {"TextClassifier": TextClassifier(TextEncoder.from_pretrained(minilm_path()), 2),
              "MultimodalModel": load_model("tiny", video=False)}
    for name, model in models.items():
        folder = save_model(model, tmp_path / name, tokenizer=minilm_tokenizer())
        meta = json.loads((folder / "hybridformer.json").read_text())
        assert sorted(meta) == ["architecture", "config", "format_version"] and meta["architecture"] == name
        assert {"hybridformer.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in folder.iterdir()}
        assert architecture_at(folder) is ARCHITECTURES[name]
        reloaded = load_model(folder)
        assert type(reloaded) is type(model)
        for (k, a), (_, b) in zip(model.state_dict().items(), reloaded.state_dict().items()):
            assert torch.equal(a, b), k


def test_int8_folder_adds_quantization_and_keeps_other_files(tmp_path: Path) -> None:
    torch.manual_seed(0)
    q = quantize_multimodal(load_model("tiny", video=False))
    folder = tmp_path / "q"
    folder.mkdir()
    (folder / "generation_config.json").write_text('{"temperature": 0.7}')
    save_model(q, folder)
    meta = json.loads((folder / "hybridformer.json").read_text())
    assert meta["quantization"]["mode"] == "dynamic" and "int8_storage" in meta
    assert (folder / "generation_config.json").read_text() == '{"temperature": 0.7}'  # untouched
    assert quantization_of(load_model(folder)) == quantization_of(q)


def test_flavors_and_families() -> None:
    assert set(FLAVORS) >= {"tiny", "base", "minilm"}
    assert family_of("tiny").name == "multimodal" and family_of(minilm_path()).name == "text"
    assert isinstance(load_model("minilm"), TextEncoder)
    with torch.device("meta"):
        assert isinstance(load_model("base"), MultimodalModel)
    with pytest.raises(FileNotFoundError, match="checkpoint folder not found"):
        load_model("no-such-flavor")


def test_unregistered_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a registered architecture"):
        save_model(torch.nn.Linear(2, 2), tmp_path)
