"""build_classifier: from an encoder checkpoint (fresh head) or from a saved classifier (trained further)."""

from pathlib import Path

import pytest
import torch

from hybridformer.config import ConfigError
from hybridformer.encoders import TextEncoder, TextEncoderConfig
from hybridformer.models import TextClassifier
from hybridformer.recipes import ModelConfig, build_classifier
from hybridformer.sparsity import full_width
from hybridformer.registry import save_model


def _saved_classifier(path: Path) -> TextClassifier:
    torch.manual_seed(0)
    encoder = TextEncoder(TextEncoderConfig(vocab_size=50, d_model=32, n_layers=2, n_heads=2, d_ff=64,
                                            max_positions=16))
    model = TextClassifier(encoder, 3, label_names=["a", "b", "c"])
    torch.nn.init.normal_(model.head.out_proj.weight)  # not the initialisation a fresh head would get
    save_model(model, path)
    return model.eval()


def test_a_saved_classifier_continues_with_its_head_and_new_gates(tmp_path: Path) -> None:
    saved = _saved_classifier(tmp_path / "clf")
    config = ModelConfig(init_from=str(tmp_path / "clf"), sparsity={"enabled": True, "n_groups": 4})
    model = build_classifier(config, ["a", "b", "c"]).eval()
    assert torch.equal(model.head.out_proj.weight, saved.head.out_proj.weight)
    assert all(block.ffn.gate is not None for block in model.encoder.blocks)
    ids = torch.randint(1, 50, (2, 16))
    with full_width(model):  # gates bypassed: exactly the saved classifier
        torch.testing.assert_close(model(ids).logits, saved(ids).logits)


def test_a_saved_classifier_of_other_labels_or_head_settings_is_refused(tmp_path: Path) -> None:
    _saved_classifier(tmp_path / "clf")
    with pytest.raises(ConfigError, match=r"classifies \['a', 'b', 'c'\].*\['x', 'y'\]"):
        build_classifier(ModelConfig(init_from=str(tmp_path / "clf")), ["x", "y"])
    with pytest.raises(ConfigError, match="leave pooling and head_dropout"):
        build_classifier(ModelConfig(init_from=str(tmp_path / "clf"), pooling="mean"), ["a", "b", "c"])
