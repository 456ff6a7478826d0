"""Pretrained parts of the multimodal model from the CLI's model section: torchvision trunk files
(written here from torchvision models built locally) load and equal them; a BERT folder becomes the
text encoder; ``--model X`` and ``--model.image.weights`` combine."""

from __future__ import annotations

import pytest
import torch
import torchvision
from safetensors.torch import save_file

from hybridformer.config import ConfigError, load_config
from hybridformer.data import minilm_path
from hybridformer.recipes.multimodal_common import load_model
from hybridformer.recipes.multimodal_model_config import MMModelConfig, PretrainedPart, model_tokenizer
from hybridformer.recipes.multimodal_tasks import MMFinetuneConfig


def _tiny_resnet() -> torch.nn.Module:
    """torchvision's ResNet with one BasicBlock per stage: the tiny flavor's trunk architecture (3 of 4 stages kept)."""
    torch.manual_seed(1)
    return torchvision.models.resnet.ResNet(torchvision.models.resnet.BasicBlock, [1, 1, 1, 1], num_classes=7)


def _tiny_mc3() -> torch.nn.Module:
    from torchvision.models.video import resnet as v

    torch.manual_seed(2)
    return v.VideoResNet(v.BasicBlock, [v.Conv3DSimple] + [v.Conv3DNoTemporal] * 3, [1, 1, 1, 1], v.BasicStem)


def _part(path) -> PretrainedPart:
    return PretrainedPart(str(path))


def _equal_trunk(trunk: torch.nn.Module, reference: torch.nn.Module) -> None:
    ref = reference.state_dict()
    for name, value in trunk.state_dict().items():
        assert torch.equal(value, ref[name]), name


def test_model_shorthand_and_weights_combine_in_any_order(tmp_path):
    weights = tmp_path / "w.pth"
    torch.save({}, weights)
    for argv in (["--model", "runs/x", "--model.image.weights", str(weights)],
                 ["--model.image.weights", str(weights), "--model", "runs/x"]):
        config = load_config(MMFinetuneConfig, None, argv)
        assert config.model.name == "runs/x" and config.model.image.weights == str(weights)
    with pytest.raises(ConfigError, match="weights: not found"):
        load_config(MMFinetuneConfig, None, ["--model.video.weights", str(tmp_path / "none.pth")])


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_trunk_files_load_and_equal_the_torchvision_models(tmp_path, suffix):
    resnet, mc3 = _tiny_resnet(), _tiny_mc3()
    files = {}
    for name, module in (("image", resnet), ("video", mc3)):
        files[name] = tmp_path / f"{name}{suffix}"
        state = {k: v.contiguous() for k, v in module.state_dict().items()}
        save_file(state, files[name]) if suffix == ".safetensors" else torch.save(state, files[name])
    spec = MMModelConfig(image=_part(files["image"]), video=_part(files["video"]))
    model = load_model(spec, video=True)
    _equal_trunk(model.image_encoder.trunk, resnet)
    _equal_trunk(model.video_encoder.trunk, mc3)


def test_a_trunk_of_another_architecture_is_refused_naming_the_keys(tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    with pytest.raises(ValueError, match="r18.pth"):
        load_model(MMModelConfig(image=_part(path)))


def test_a_bert_folder_becomes_the_text_encoder_with_its_tokenizer():
    from hybridformer.encoders.text import TextEncoder

    spec = MMModelConfig(text=_part(minilm_path()))
    model = load_model(spec)
    reference = TextEncoder.from_pretrained(minilm_path()).state_dict()
    assert all(torch.equal(v, reference[k]) for k, v in model.text_encoder.state_dict().items())
    tok = model_tokenizer(spec)
    assert model.decoder.config.bos_token_id == tok.cls_token_id and model.decoder.config.vocab_size == len(tok)
