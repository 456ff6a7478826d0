"""SmoothQuant-style smoothing before dynamic int8: a float identity, a smaller int8 error where
activations have outlier channels, exact save/load, the group kernel, the CLI and bad input."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from hybridformer.cli import main
from hybridformer.compression import quantization_of, quantize
from hybridformer.compression.int8_smooth import attach_input_scales, input_maxima, input_scale_of, smooth_weights
from hybridformer.encoders import TextEncoder, TextEncoderConfig
from hybridformer.models import TextClassifier
from hybridformer.sparsity import GatedFFN, SparsityConfig, masked_ffn
from hybridformer.registry import load_model, save_model

def _linears(model: torch.nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if type(m) is torch.nn.Linear]


def test_smoothing_alone_is_a_float_identity(minilm_classifier, minilm_batch) -> None:
    smoothed = copy.deepcopy(minilm_classifier)
    names = _linears(smoothed)
    scales = smooth_weights(smoothed, input_maxima(smoothed, names, [minilm_batch]), alpha=0.8)
    attach_input_scales(smoothed, scales)
    assert set(scales) == set(names)
    # The weights really changed (MiniLM's outlier features give s far from 1)...
    spread = max(float(s.max() / s.min()) for s in scales.values())
    assert spread > 10.0
    changed = smoothed.encoder.blocks[0].ffn.fc_in.weight
    assert not torch.allclose(changed, minilm_classifier.encoder.blocks[0].ffn.fc_in.weight)
    mask = minilm_batch["attention_mask"]
    with torch.no_grad():
        ref = minilm_classifier.encoder(minilm_batch["input_ids"], attention_mask=mask).last_hidden_state[mask]
        out = smoothed.encoder(minilm_batch["input_ids"], attention_mask=mask).last_hidden_state[mask]
        logits = (smoothed(**minilm_batch).logits, minilm_classifier(**minilm_batch).logits)
    # ...but x diag(1/s) (W diag(s))^T = x W^T: only float rounding differs (hidden states are O(1)).
    assert (out - ref).abs().max() <= 1e-5
    assert (logits[0] - logits[1]).abs().max() <= 1e-5


def _outlier_model() -> TextClassifier:
    """A small encoder whose LayerNorm outputs carry BERT-like outlier features (3 of 64 channels x25)."""
    torch.manual_seed(0)
    config = TextEncoderConfig(vocab_size=500, d_model=64, n_layers=2, n_heads=4, d_ff=256, max_positions=64)
    model = TextClassifier(TextEncoder(config), 2, label_names=["a", "b"]).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight[[3, 17, 40]] *= 25.0
    return model


def _rel_error(model: TextClassifier, reference: TextClassifier, batch: dict[str, torch.Tensor]) -> float:
    mask = batch["attention_mask"]
    with torch.no_grad():
        out = model.encoder(batch["input_ids"], attention_mask=mask).last_hidden_state[mask]
        ref = reference.encoder(batch["input_ids"], attention_mask=mask).last_hidden_state[mask]
    return float(((out - ref).norm(dim=-1) / ref.norm(dim=-1)).mean())


def test_smoothing_cuts_the_int8_error_on_outlier_channels() -> None:
    model = _outlier_model()
    torch.manual_seed(1)
    calibrate = [{"input_ids": torch.randint(1, 500, (4, 24)), "attention_mask": torch.ones(4, 24, dtype=torch.bool)}]
    test = {"input_ids": torch.randint(1, 500, (3, 20)), "attention_mask": torch.ones(3, 20, dtype=torch.bool)}
    plain = _rel_error(quantize(model, "dynamic", "ao", embeddings=False), model, test)
    smoothed_model = quantize(model, "dynamic", "ao", embeddings=False, smooth=0.8, calibration=calibrate)
    smoothed = _rel_error(smoothed_model, model, test)
    assert quantization_of(smoothed_model).smooth == 0.8
    assert 1e-4 < smoothed < 0.5 * plain  # per-tensor activations: outliers cost most of the range


def test_save_load_keeps_the_input_scales(tmp_path: Path) -> None:
    model = _outlier_model()
    torch.manual_seed(1)
    calibrate = [{"input_ids": torch.randint(1, 500, (4, 24)), "attention_mask": torch.ones(4, 24, dtype=torch.bool)}]
    quantized = quantize(model, "dynamic", smooth=0.5, calibration=calibrate)
    folder = save_model(quantized, tmp_path / "int8")
    loaded = load_model(folder)
    assert quantization_of(loaded) == quantization_of(quantized)
    layer = "encoder.blocks.0.ffn.fc_in"
    assert torch.equal(input_scale_of(dict(loaded.named_modules())[layer]),
                       input_scale_of(dict(quantized.named_modules())[layer]))
    with torch.no_grad():
        assert torch.equal(loaded(**calibrate[0]).logits, quantized(**calibrate[0]).logits)


def test_group_kernel_applies_both_input_scales() -> None:
    torch.manual_seed(0)
    ffn = GatedFFN(64, 256, SparsityConfig(enabled=True, n_groups=8, inference="top_g", top_g=3)).eval()
    with torch.no_grad():
        ffn.gate.groups.weight.normal_(std=0.5)
    ffn.keep_groups(torch.tensor([0, 1, 3, 4, 6, 7]))
    torch.manual_seed(1)
    x = torch.randn(2, 24, 64)
    x[..., [5, 9]] *= 30.0  # outlier input channels
    mask = torch.ones(2, 24, dtype=torch.bool)
    quantized = quantize(ffn, "dynamic", "ao", embeddings=False, smooth=0.8, calibration=[{"x": x}])
    kernel = quantized.sparse_kernel
    assert kernel.scale_in is not None and kernel.scales_out is not None
    kernel.dense_above = 1.0  # always dispatch
    with torch.no_grad():
        d = ffn.gate(x, mask)
        dense_int8 = masked_ffn(x, d.group_gates, d.run_gates, quantized.fc_in, quantized.fc_out, quantized.act)
        fp32 = ffn(x, mask).hidden_states
        out = quantized(x, mask).hidden_states
    scale = fp32.abs().max()
    # The dense form goes through the layers' hooks, the kernel applies the scales itself: the same
    # int8 weights, so only activation rounding (per call) separates them; both stay near fp32.
    assert (out - dense_int8).abs().max() <= 0.05 * scale
    assert (out - fp32).abs().max() <= 0.05 * scale


def test_smoothing_needs_calibration_and_a_valid_alpha(minilm_classifier, minilm_batch, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="calibration"):
        quantize(minilm_classifier, "dynamic", smooth=0.5)
    with pytest.raises(ValueError, match="alpha"):
        quantize(minilm_classifier, "dynamic", smooth=1.5, calibration=[minilm_batch])
    with pytest.raises(ValueError, match="no batches"):
        quantize(minilm_classifier, "dynamic", smooth=0.5, calibration=[])
    assert main(["quantize", "--model", "m", "--out", "o", "--smooth", "0.5"]) == 2
    assert "--smooth: needs calibration data" in capsys.readouterr().err
    assert main(["quantize", "--model", "m", "--out", "o", "--smooth", "2", "--data.task", "sentiment"]) == 2
    assert "--smooth: alpha" in capsys.readouterr().err
    assert main(["quantize", "--model", "m", "--out", "o", "--train.lr", "1"]) == 2
    assert "unknown option of quantize" in capsys.readouterr().err


def test_cli_smooths_on_task_batches(minilm_classifier, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    save_model(minilm_classifier, tmp_path / "fp32")
    code = main(["quantize", "--model", str(tmp_path / "fp32"), "--out", str(tmp_path / "int8"), "--smooth", "0.8",
                 "--data.task", "sentiment", "--data.max_length", "32", "--calibration-batches", "2"])
    assert code == 0
    assert "smoothed (alpha 0.8)" in capsys.readouterr().out
    loaded = load_model(tmp_path / "int8")
    assert quantization_of(loaded).smooth == 0.8
    assert input_scale_of(loaded.encoder.blocks[0].attention.qkv_proj) is not None  # q/k/v fused by default
