"""int8 for the multimodal model (compression/int8_multimodal.py) against the float model it came from.

The tiny flavor is randomly initialised (no trained multimodal weights ship): its logits are what is
compared, not its (meaningless) captions.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hybridformer.cli import main
from hybridformer.compression import quantization_of
from hybridformer.compression.int8_multimodal import quantize_multimodal, stored_int8
from hybridformer.models import MultimodalModel, multimodal_tiny
from hybridformer.registry import load_model, save_model


@pytest.fixture(scope="module")
def tiny() -> MultimodalModel:
    torch.manual_seed(0)
    return multimodal_tiny().eval()


@pytest.fixture(scope="module")
def inputs(tiny) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1000, 5000, (4, 24), generator=g)
    ids[:, 0] = tiny.config.decoder.bos_token_id
    return {"input_ids": ids, "images": torch.rand(4, 3, 32, 32, generator=g),
            "videos": torch.rand(4, 3, 8, 32, 32, generator=g)}


def _relative_error(model, reference, inputs) -> float:
    with torch.no_grad():
        got, want = model(**inputs).logits, reference(**inputs).logits
    return ((got - want).norm() / want.norm()).item()


@pytest.mark.parametrize(("mode", "tolerance"), [("weight", 0.025), ("dynamic", 0.08)])
def test_int8_multimodal_logits_stay_close_to_fp32(tiny, inputs, mode, tolerance):
    q = quantize_multimodal(tiny, mode)
    spec = quantization_of(q)
    assert spec.embeddings and len(spec.linears) == 47
    # Every Linear but the decoders' token scorers and the text encoder's pooling (which decide what is
    # attended) is int8; those stay float (the pooled branch's gate is int8).
    assert all(".scorer." not in name and ".pool_proj" not in name for name in spec.linears)
    assert sum(".pooled.gate_proj" in name for name in spec.linears) == 2
    assert any(".scorer." in name for name, m in q.named_modules() if type(m) is torch.nn.Linear)
    stored = stored_int8(q)
    assert "decoder.token_embeddings.weight" in stored and sum("encoder.trunk" in n for n in stored) == 18
    kernel = dict(q.named_parameters())["image_encoder.trunk.conv1.weight"]
    assert all(kernel[c].unique().numel() <= 255 for c in range(kernel.shape[0]))  # int8 values times a row scale
    # Measured on this model: weight-only 1.2% (per-row int8 weights and stored kernels alone), dynamic
    # 3.8% (plus torch.ao's per-tensor 7-bit activations on a random init's spread-out activations).
    # Tolerances are about twice that; the float model itself is untouched (a copy was quantized).
    error = _relative_error(q, tiny, inputs)
    assert 0 < error <= tolerance
    assert all(isinstance(p, torch.Tensor) and p.dtype == torch.float32 for p in tiny.parameters())


def test_int8_cached_generation_matches_its_own_full_forward(tiny, inputs):
    q = quantize_multimodal(tiny)
    prompt = {"input_ids": inputs["input_ids"][:, :5], "images": inputs["images"], "videos": inputs["videos"]}
    cached = q.generate(**prompt, max_new_tokens=10)
    # The cached ring-buffer decode runs q/k/v as separate int8 layers on one token per step; the
    # full forward of the same tokens gives the chosen tokens' log-probabilities it must reproduce
    # (up to per-call activation rounding).
    ids = torch.cat([prompt["input_ids"], cached.sequences], dim=1)
    with torch.no_grad():
        logits = q(ids, images=inputs["images"], videos=inputs["videos"]).logits[:, 4:-1].log_softmax(-1)
    forward = logits.gather(-1, cached.sequences[..., None])[..., 0].sum(1)  # (B,)
    torch.testing.assert_close(cached.scores, forward, rtol=5e-3, atol=0.0)


def test_saved_int8_multimodal_loads_bit_identical_and_is_a_quarter_of_fp32(tiny, inputs, tmp_path: Path):
    q = quantize_multimodal(tiny)
    save_model(tiny, tmp_path / "fp32")
    save_model(q, tmp_path / "int8")
    loaded = load_model(tmp_path / "int8")
    with torch.no_grad():
        assert torch.equal(loaded(**inputs).logits, q(**inputs).logits)
    prompt = {"input_ids": inputs["input_ids"][:, :3], "images": inputs["images"], "videos": inputs["videos"]}
    assert torch.equal(loaded.generate(**prompt, max_new_tokens=6).sequences, q.generate(**prompt, max_new_tokens=6).sequences)
    size = (tmp_path / "int8" / "model.safetensors").stat().st_size
    assert size <= 0.28 * (tmp_path / "fp32" / "model.safetensors").stat().st_size  # measured 27.1%
    for bad in ("model.safetensors",):
        (tmp_path / "int8" / bad).unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_model(tmp_path / "int8")


def test_quantize_command_on_a_multimodal_folder_then_generate(tiny, tmp_path: Path, capsys):
    from PIL import Image

    from hybridformer.data import minilm_tokenizer

    save_model(tiny, tmp_path / "mm", tokenizer=minilm_tokenizer())
    assert main(["quantize", "--model", str(tmp_path / "mm"), "--out", str(tmp_path / "q")]) == 0
    out = capsys.readouterr().out
    assert "47 Linear layers and the word embeddings" in out and "stored int8" in out
    assert main(["quantize", "--model", str(tmp_path / "mm"), "--out", str(tmp_path / "q2"), "--smooth", "0.5"]) == 2
    assert "smoothing is calibrated on text-classification batches" in capsys.readouterr().err
    Image.new("RGB", (40, 40), (200, 30, 30)).save(tmp_path / "red.png")
    args = ["generate", "--image", str(tmp_path / "red.png"), "--prompt", "a photo of", "--max-new-tokens", "4"]
    assert main([*args, "--model", str(tmp_path / "q")]) == 0
    int8_text = capsys.readouterr().out
    assert main([*args, "--model", str(tmp_path / "mm")]) == 0
    assert int8_text.strip() and capsys.readouterr().out.strip()
