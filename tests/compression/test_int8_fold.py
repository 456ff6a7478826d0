"""Folding o_proj's smoothing scale into v_proj: the same int8 values, exact row scales, the same
outputs (float compute, also through compressed attention) or the same int8 error (dynamic), exact save/load."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import hybridformer.compression.quantize  # noqa: F401  (the module, for monkeypatching its fold step)
from hybridformer.attention import AttentionConfig
from hybridformer.compression import quantization_of, quantize
from hybridformer.compression.int8_backends import backend_for
from hybridformer.compression.int8_smooth import input_scale_of
from hybridformer.encoders import TextEncoder, TextEncoderConfig
from hybridformer.models import TextClassifier
from hybridformer.registry import load_model, save_model

QUANTIZE_MODULE = sys.modules["hybridformer.compression.quantize"]


def _unfolded(monkeypatch: pytest.MonkeyPatch, *args, **kwargs) -> torch.nn.Module:
    """The same quantization without the fold (the untransformed reference)."""
    with monkeypatch.context() as patch:
        patch.setattr(QUANTIZE_MODULE, "fold_output_scales", lambda model, adapter: 0)
        return quantize(*args, **kwargs)


def _hidden(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    mask = batch["attention_mask"]
    with torch.no_grad():
        return model.encoder(batch["input_ids"], attention_mask=mask).last_hidden_state[mask]


def test_fold_rescales_v_rows_exactly(minilm_classifier, minilm_batch, monkeypatch: pytest.MonkeyPatch) -> None:
    kwargs = {"smooth": 0.8, "calibration": [minilm_batch], "fuse_qkv": False}  # v_proj its own layer
    folded = quantize(minilm_classifier, "dynamic", "ao", **kwargs)
    plain = _unfolded(monkeypatch, minilm_classifier, "dynamic", "ao", **kwargs)
    adapter = backend_for("ao", "dynamic")
    for f_block, p_block in zip(folded.encoder.blocks, plain.encoder.blocks):
        a = input_scale_of(p_block.attention.o_proj)  # (384,) the scale the fold moved
        assert a is not None and input_scale_of(f_block.attention.o_proj) is None
        assert not f_block.attention.o_proj._forward_pre_hooks  # no product left before o_proj
        v_f, v_p = adapter.read(f_block.attention.v_proj), adapter.read(p_block.attention.v_proj)
        assert torch.equal(v_f.qweight, v_p.qweight)  # the int8 values are untouched
        torch.testing.assert_close(v_f.scale, v_p.scale * a.double(), rtol=1e-6, atol=0)
        torch.testing.assert_close(v_f.bias, v_p.bias * a, rtol=1e-6, atol=0)
    # Block 0's o_proj sees the same int8 input (its product folded upstream): float rounding only.
    seen = {}
    for tag, model in (("folded", folded), ("plain", plain)):
        hook = model.encoder.blocks[0].attention.o_proj.register_forward_pre_hook(
            lambda module, args, tag=tag: seen.__setitem__(tag, args[0].clone()))  # after the scale hook
        with torch.no_grad():
            model(**minilm_batch)
        hook.remove()
    torch.testing.assert_close(seen["folded"], seen["plain"], rtol=1e-5, atol=1e-6)


def test_fold_is_exact_in_float_compute(minilm_classifier, minilm_batch, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torchao")
    # Weight-only int8 computes in float, so nothing rounds activations: the folded model equals the
    # unfolded one up to float rounding (hidden states are O(1), 6 blocks deep).
    folded = quantize(minilm_classifier, "weight", "torchao", smooth=0.8, calibration=[minilm_batch])
    plain = _unfolded(monkeypatch, minilm_classifier, "weight", "torchao", smooth=0.8, calibration=[minilm_batch])
    assert input_scale_of(folded.encoder.blocks[0].attention.o_proj) is None
    assert (_hidden(folded, minilm_batch) - _hidden(plain, minilm_batch)).abs().max() <= 1e-4


def test_dynamic_fold_keeps_the_int8_error(minilm_classifier, minilm_batch, monkeypatch: pytest.MonkeyPatch) -> None:
    # With dynamic int8 the 1e-7 float differences can flip an activation's rounding by one level,
    # which later blocks carry on (as any change of summation order would): the folded model is not
    # bitwise the unfolded one, but just as close to fp32 (mean relative error per token).
    folded = quantize(minilm_classifier, "dynamic", "ao", smooth=0.8, calibration=[minilm_batch])
    plain = _unfolded(monkeypatch, minilm_classifier, "dynamic", "ao", smooth=0.8, calibration=[minilm_batch])
    ref = _hidden(minilm_classifier, minilm_batch)

    def error(model: torch.nn.Module) -> float:
        return float(((_hidden(model, minilm_batch) - ref).norm(dim=-1) / ref.norm(dim=-1)).mean())

    assert error(folded) <= 1.25 * error(plain) + 1e-3


def test_folded_model_saves_and_loads_exactly(tmp_path: Path) -> None:
    torch.manual_seed(0)
    attention = AttentionConfig(d_model=64, n_heads=4, kind="hybrid", window=8, global_k=4)
    config = TextEncoderConfig(vocab_size=500, d_model=64, n_layers=2, n_heads=4, d_ff=256, max_positions=64,
                               attention=attention)
    model = TextClassifier(TextEncoder(config), 2, label_names=["a", "b"]).eval()
    batch = {"input_ids": torch.randint(1, 500, (3, 24)), "attention_mask": torch.ones(3, 24, dtype=torch.bool)}
    quantized = quantize(model, "dynamic", smooth=0.8, calibration=[batch])
    assert input_scale_of(quantized.encoder.blocks[0].attention.o_proj) is None  # hybrid (scorer) folds
    loaded = load_model(save_model(quantized, tmp_path / "int8"))
    assert input_scale_of(loaded.encoder.blocks[0].attention.o_proj) is None
    with torch.no_grad():
        assert torch.equal(loaded(**batch).logits, quantized(**batch).logits)


@pytest.mark.parametrize("selection", ["compressed", "pooled"])
def test_compressed_and_pooled_attention_fold_exactly_in_float_compute(monkeypatch: pytest.MonkeyPatch, selection) -> None:
    pytest.importorskip("torchao")
    torch.manual_seed(0)
    extra = {"compress_block": 4} if selection == "compressed" else {"pool_block": 16, "pinned_global": 1}
    attention = AttentionConfig(d_model=64, n_heads=4, kind="hybrid", selection=selection, window=8,
                                global_k=4, **extra)
    config = TextEncoderConfig(vocab_size=500, d_model=64, n_layers=2, n_heads=4, d_ff=256, max_positions=64,
                               attention=attention)
    model = TextClassifier(TextEncoder(config), 2, label_names=["a", "b"]).eval()
    batch = {"input_ids": torch.randint(1, 500, (2, 32)), "attention_mask": torch.ones(2, 32, dtype=torch.bool)}
    batch["attention_mask"][1, 20:] = False
    folded = quantize(model, "weight", "torchao", smooth=0.8, calibration=[batch])
    plain = _unfolded(monkeypatch, model, "weight", "torchao", smooth=0.8, calibration=[batch])
    # The compressed branch pools v with weights computed from k, the pooled branch weighs v by its
    # pooled queries' probabilities: both linear in v per channel.
    assert input_scale_of(folded.encoder.blocks[0].attention.o_proj) is None
    if selection == "pooled":  # the pooling decides which keys are selected: it stays float, its gate is int8
        linears = quantization_of(folded).linears
        assert not any("pool_proj" in name for name in linears) and any("pooled.gate_proj" in name for name in linears)
    assert (_hidden(folded, batch) - _hidden(plain, batch)).abs().max() <= 1e-5
