"""Folders written before the one format (text models' format 1, int8 in model.int8.safetensors) still
load through ``load_model``, with the same outputs as the model that wrote them.

The old writers are captured here as they were (the JSON written by hand, the tensors as they stored
them), so these tests keep checking what today's folders on disk look like.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from hybridformer.attention import AttentionConfig
from hybridformer.compression import pack_classifier, pack_multimodal, quantization_of, quantize, quantize_multimodal
from hybridformer.config import to_dict
from hybridformer.encoders import TextEncoder, TextEncoderConfig
from hybridformer.model_folder import read_meta
from hybridformer.models import MultimodalModel, TextClassifier, TextForMaskedLM, multimodal_tiny
from hybridformer.registry import load_model, save_model


def _encoder(n_layers: int = 2) -> TextEncoder:
    torch.manual_seed(0)
    return TextEncoder(TextEncoderConfig(
        vocab_size=60, d_model=16, n_layers=n_layers, n_heads=2, d_ff=32, max_positions=32, dropout=0.0,
        attention=AttentionConfig(kind="hybrid", window=4, global_k=2),
    )).eval()


def _batch() -> dict[str, torch.Tensor]:
    ids = torch.randint(1, 60, (3, 12), generator=torch.Generator().manual_seed(1))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids, dtype=torch.bool)}


def _write_text_v1(model, folder: Path, architecture: str, prefix: str, head: dict, weights: str = "model.safetensors",
                   tensors: dict | None = None, quantization: dict | None = None) -> Path:
    """The text models' writer before the shared format (``write_text_checkpoint``, ``save_quantized``)."""
    folder.mkdir(parents=True)
    encoder = model.encoder.config if prefix else model.config
    meta = {"format": "hybridformer", "format_version": 1, "architecture": architecture, "encoder_prefix": prefix,
            "encoder": to_dict(encoder), **head}
    if quantization is not None:
        meta["quantization"] = quantization
    state = tensors if tensors is not None else model.state_dict()
    save_file({k: v.detach().contiguous() for k, v in state.items()}, str(folder / weights), metadata={"format": "pt"})
    (folder / "hybridformer.json").write_text(json.dumps(meta))
    return folder


def _write_multimodal_v1(model, folder: Path, weights: str = "model.safetensors", tensors: dict | None = None,
                         extra: dict | None = None) -> Path:
    """``save_multimodal`` / ``save_quantized_multimodal`` before the shared format."""
    folder.mkdir(parents=True)
    meta = {"architecture": "MultimodalModel", "format_version": 1, "config": to_dict(model.config), **(extra or {})}
    state = tensors if tensors is not None else model.state_dict()
    save_file({k: v.detach().contiguous() for k, v in state.items()}, str(folder / weights), metadata={"format": "pt"})
    (folder / "hybridformer.json").write_text(json.dumps(meta))
    return folder


def _head(model: TextClassifier) -> dict:
    return {"num_labels": model.num_labels, "pooling": model.head.pooling, "dropout": model.dropout,
            "label_names": model.label_names}


@pytest.mark.parametrize("n_layers", [2, 1], ids=["classifier", "distilled-student"])
def test_old_text_classifier_folder_loads(tmp_path: Path, n_layers: int) -> None:
    model = TextClassifier(_encoder(n_layers), 3, label_names=["a", "b", "c"]).eval()
    folder = _write_text_v1(model, tmp_path / "old", "TextClassifier", "encoder.", _head(model))
    loaded = load_model(folder).eval()
    assert isinstance(loaded, TextClassifier) and loaded.label_names == ["a", "b", "c"]
    with torch.no_grad():
        assert torch.equal(loaded(**_batch()).logits, model(**_batch()).logits)
    assert read_meta(folder).format_version == 1
    save_model(loaded, folder)  # converting is re-saving
    assert json.loads((folder / "hybridformer.json").read_text())["config"]["num_labels"] == 3
    with torch.no_grad():
        assert torch.equal(load_model(folder).eval()(**_batch()).logits, model(**_batch()).logits)


def test_old_masked_lm_and_encoder_folders_load(tmp_path: Path) -> None:
    mlm = TextForMaskedLM(_encoder()).eval()
    folder = _write_text_v1(mlm, tmp_path / "mlm", "TextForMaskedLM", "encoder.", {})
    with torch.no_grad():
        assert torch.equal(load_model(folder).eval()(**_batch()).logits, mlm(**_batch()).logits)
    encoder = _encoder()
    folder = _write_text_v1(encoder, tmp_path / "enc", "TextEncoder", "", {})
    with torch.no_grad():
        got = load_model(folder).eval()(**_batch()).last_hidden_state
        assert torch.equal(got, encoder(**_batch()).last_hidden_state)


def test_old_int8_classifier_folder_loads(tmp_path: Path) -> None:
    model = TextClassifier(_encoder(), 2).eval()
    q = quantize(model, "dynamic")
    tensors, _ = pack_classifier(q)
    folder = _write_text_v1(q, tmp_path / "int8", "TextClassifier", "encoder.", _head(model),
                            "model.int8.safetensors", tensors, quantization_of(q).to_dict())
    loaded = load_model(folder)
    assert quantization_of(loaded) == quantization_of(q)
    with torch.no_grad():
        assert torch.equal(loaded(**_batch()).logits, q(**_batch()).logits)


def test_old_multimodal_and_its_int8_folders_load(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = multimodal_tiny(video=False).eval()
    g = torch.Generator().manual_seed(1)
    inputs = {"input_ids": torch.randint(1000, 5000, (2, 10), generator=g), "images": torch.rand(2, 3, 32, 32, generator=g)}
    folder = _write_multimodal_v1(model, tmp_path / "mm")
    loaded = load_model(folder).eval()
    assert isinstance(loaded, MultimodalModel)
    with torch.no_grad():
        assert torch.equal(loaded(**inputs).logits, model(**inputs).logits)
    q = quantize_multimodal(model)
    tensors, extra = pack_multimodal(q)
    folder = _write_multimodal_v1(q, tmp_path / "mm-int8", "model.int8.safetensors", tensors,
                                  {"quantization": quantization_of(q).to_dict(), **extra})
    loaded = load_model(folder)
    with torch.no_grad():
        assert torch.equal(loaded(**inputs).logits, q(**inputs).logits)


def test_unknown_old_folder_says_how_to_convert(tmp_path: Path) -> None:
    (tmp_path / "hybridformer.json").write_text(json.dumps({"format": "hybridformer", "architecture": "Foo",
                                                            "encoder": {}}))
    with pytest.raises(ValueError, match="unknown architecture 'Foo'; re-save it with hybridformer.registry.save_model"):
        load_model(tmp_path)
    (tmp_path / "hybridformer.json").write_text(json.dumps({"architecture": "X", "format_version": 9, "config": {}}))
    with pytest.raises(ValueError, match="format_version 9 is newer"):
        load_model(tmp_path)


def test_a_folder_without_selection_keeps_the_scorer_it_was_written_with(tmp_path):
    """Before issue 24 the default selection was the scorer and folders may name none: they load with
    the scorer (whose weights they hold) and give the writer's outputs, not the new pooled default."""
    torch.manual_seed(0)
    scorer = AttentionConfig(kind="hybrid", window=4, global_k=2, selection="scorer")
    model = TextClassifier(TextEncoder(TextEncoderConfig(
        vocab_size=60, d_model=16, n_layers=2, n_heads=2, d_ff=32, max_positions=32, dropout=0.0, attention=scorer,
    )), num_labels=3).eval()
    folder = save_model(model, tmp_path / "old")
    meta = json.loads((folder / "hybridformer.json").read_text())
    del meta["config"]["encoder"]["attention"]["selection"]  # as written before the field had to be named
    (folder / "hybridformer.json").write_text(json.dumps(meta))
    loaded = load_model(folder).eval()
    assert loaded.encoder.config.attention.selection == "scorer" and hasattr(loaded.encoder.blocks[0].attention, "scorer")
    with torch.no_grad():
        torch.testing.assert_close(loaded(**_batch()).logits, model(**_batch()).logits)
    assert AttentionConfig().selection == "pooled"  # what a folder naming none would otherwise get
