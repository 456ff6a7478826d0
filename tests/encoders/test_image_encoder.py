"""The ResNet image encoder against torchvision's own model with the same weights."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision
from safetensors.torch import save_file

from hybridformer.config import ConfigError
from hybridformer.encoders import ImageEncoder, ImageEncoderConfig
from hybridformer.encoders.feature_tokens import sincos_position_embedding


def _torchvision_features(model: torchvision.models.ResNet, x: torch.Tensor) -> torch.Tensor:
    # torchvision's forward with the head cut off: everything before avgpool, via its own children.
    body = torch.nn.Sequential(*list(model.children())[:-2])
    return body(x)


def _reference_resnet18(seed: int = 0) -> torchvision.models.ResNet:
    torch.manual_seed(seed)
    model = torchvision.models.resnet18(weights=None)
    with torch.no_grad():  # non-trivial BN statistics, so eval-mode BN is not the identity
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    return model.eval()


def test_feature_map_equals_torchvision_resnet18_rgb(tmp_path):
    ref = _reference_resnet18()
    path = tmp_path / "resnet18.pth"
    torch.save(ref.state_dict(), path)
    enc = ImageEncoder(ImageEncoderConfig(depth=18, in_channels=3, d_model=32, weights=str(path)))
    enc.init_weights()
    enc.eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        out = enc(x)
        expected = _torchvision_features(ref, x)
    assert out.feature_map.shape == (2, 512, 2, 3)
    torch.testing.assert_close(out.feature_map, expected, atol=1e-6, rtol=0)
    assert out.tokens.shape == (2, 6, 32) and out.mask.shape == (2, 6) and bool(out.mask.all())
    # tokens are LayerNorm(Linear(feature + sincos)) of the map, row-major over (h, w)
    flat = expected.flatten(2).transpose(1, 2) + sincos_position_embedding((2, 3), 512)
    torch.testing.assert_close(out.tokens, enc.tokenizer.norm(enc.tokenizer.proj(flat)))


def test_grey_input_with_rgb_weights_equals_rgb_model_on_repeated_channels(tmp_path):
    ref = _reference_resnet18(seed=1)
    path = tmp_path / "resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))
    enc = ImageEncoder(ImageEncoderConfig(depth=18, in_channels=1, d_model=16, weights=str(path))).eval()
    enc.init_weights()
    assert enc.trunk.conv1.weight.shape == (64, 1, 7, 7)
    grey = torch.rand(3, 1, 64, 64)
    with torch.no_grad():
        ours = enc(grey).feature_map
        expected = _torchvision_features(ref, grey.expand(-1, 3, -1, -1))
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)


def test_one_channel_conv1_swapped_matches_torchvision_with_same_weights():
    ref = _reference_resnet18(seed=2)
    ref.conv1 = torch.nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    enc = ImageEncoder(ImageEncoderConfig(depth=18, in_channels=1, d_model=16)).eval()
    state = {k: v for k, v in ref.state_dict().items() if not k.startswith("fc.")}
    enc.trunk.load_state_dict(state)
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(enc(x).feature_map, _torchvision_features(ref, x), atol=1e-6, rtol=0)


@pytest.mark.parametrize("depth,stages", [(18, 4), (10, 3)])
def test_meta_build_then_init_equals_eager_build(depth, stages):
    config = ImageEncoderConfig(depth=depth, stages=stages, in_channels=1, d_model=24)
    torch.manual_seed(7)
    eager = ImageEncoder(config)  # the constructor allocates without drawing, then init_weights()
    with torch.device("meta"):
        lazy = ImageEncoder(config)
    lazy.to_empty(device="cpu")
    torch.manual_seed(7)
    lazy.init_weights()
    a, b = eager.state_dict(), lazy.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # torchvision's init: Kaiming fan_out for convs, BN identity with fresh statistics
    std = math.sqrt(2.0 / (64 * 7 * 7))
    assert abs(lazy.trunk.conv1.weight.std().item() - std) < 0.1 * std
    assert torch.equal(lazy.trunk.bn1.running_var, torch.ones(64))


def test_meta_build_with_a_weights_file_loads_it_on_init(tmp_path, recwarn):
    ref = _reference_resnet18(seed=4)
    path = tmp_path / "r18.pth"
    torch.save(ref.state_dict(), path)
    config = ImageEncoderConfig(depth=18, d_model=8, weights=str(path))
    with torch.device("meta"):
        lazy = ImageEncoder(config)
    assert not [w for w in recwarn if "meta" in str(w.message)]  # nothing was copied into meta tensors
    lazy.to_empty(device="cpu")
    lazy.init_weights()
    assert torch.equal(lazy.trunk.layer3[1].conv2.weight, ref.layer3[1].conv2.weight)
    assert torch.equal(lazy.trunk.bn1.running_var, ref.bn1.running_var)


def test_resnet152_is_the_articles_size():
    with torch.device("meta"):
        enc = ImageEncoder(ImageEncoderConfig())  # default depth 152, RGB, d_model 768
    trunk = sum(p.numel() for p in enc.trunk.parameters())
    # torchvision's resnet152 has 60,192,808 parameters, of which fc holds 2048*1000 + 1000
    assert trunk == 60_192_808 - 2_049_000
    assert enc.config.feature_channels == 2048 and enc.config.num_tokens == 49
    assert enc.tokenizer.proj.weight.shape == (768, 2048)


def test_bad_input_and_config_name_the_argument(tmp_path):
    with pytest.raises(ConfigError, match="depth"):
        ImageEncoderConfig(depth=20)
    with pytest.raises(ConfigError, match="in_channels"):
        ImageEncoderConfig(in_channels=2)
    enc = ImageEncoder(ImageEncoderConfig(depth=18, in_channels=1, d_model=8))
    with pytest.raises(ValueError, match=r"images: the encoder takes 1-channel input"):
        enc(torch.zeros(1, 3, 64, 64))
    with pytest.raises(ValueError, match=r"images: expected a 4-D tensor"):
        enc(torch.zeros(1, 64, 64))
    with pytest.raises(ValueError, match=r"images: height and width must be >= 32"):
        enc(torch.zeros(1, 1, 16, 64))
    wrong = tmp_path / "r34.pth"
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), wrong)
    with pytest.raises(ValueError, match=r"weights: .*r34\.pth does not match the trunk"):
        enc.load_torchvision_weights(str(wrong))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"weights: .*junk\.pth is not a readable"):
        enc.load_torchvision_weights(str(junk))
    with pytest.raises(ValueError, match="weights: file not found"):
        enc.load_torchvision_weights(str(tmp_path / "absent.safetensors"))


def test_sincos_positions_distinguish_every_cell():
    pos = sincos_position_embedding((3, 4, 5), 512)
    assert pos.shape == (60, 512)
    assert torch.cdist(pos, pos).add(torch.eye(60) * 1e3).min() > 0.1
    # the first share encodes the first axis only
    grid = pos.view(3, 4, 5, 512)
    assert torch.equal(grid[0, 0, 0, :172], grid[0, 3, 4, :172])
    with pytest.raises(ValueError, match="dim"):
        sincos_position_embedding((2, 2), 7)


def _randomise_bn(model: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
    return model.eval()


@pytest.mark.parametrize("stages", [3, 4])
def test_depth10_trunk_equals_torchvisions_resnet_class_with_the_same_weights(tmp_path, stages):
    # depth 10 = torchvision's own ResNet class with one BasicBlock per stage; `stages` cuts after layerS
    torch.manual_seed(5)
    ref = _randomise_bn(torchvision.models.resnet.ResNet(torchvision.models.resnet.BasicBlock, [1, 1, 1, 1]))
    path = tmp_path / "resnet10.pth"
    torch.save(ref.state_dict(), path)  # the whole network, layer4 and fc included
    enc = ImageEncoder(ImageEncoderConfig(depth=10, stages=stages, d_model=16, image_size=32, weights=str(path)))
    enc.eval()
    assert (hasattr(enc.trunk, "layer4")) == (stages == 4)
    x = torch.randn(2, 3, 32, 64)
    with torch.no_grad():
        body = torch.nn.Sequential(*list(ref.children())[: 4 + stages])  # conv1 bn1 relu maxpool layer1..S
        expected = body(x)
        out = enc(x)
    side = 32 // enc.config.stride
    assert out.feature_map.shape == (2, enc.config.feature_channels, side, 2 * side)
    assert enc.config.feature_channels == (256 if stages == 3 else 512)
    torch.testing.assert_close(out.feature_map, expected, atol=1e-6, rtol=0)
    assert out.tokens.shape == (2, 2 * side * side, 16)
    trunk = sum(p.numel() for p in enc.trunk.parameters())
    kept = sum(p.numel() for name, p in ref.named_parameters() if not name.startswith("fc.")
               and not any(name.startswith(f"layer{s}.") for s in range(stages + 1, 5)))
    assert trunk == kept


def test_resnet18_cut_after_layer3_loads_a_full_torchvision_checkpoint(tmp_path):
    ref = _reference_resnet18(seed=6)
    path = tmp_path / "resnet18.pth"
    torch.save(ref.state_dict(), path)
    enc = ImageEncoder(ImageEncoderConfig(depth=18, stages=3, d_model=8, weights=str(path))).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = torch.nn.Sequential(*list(ref.children())[:7])(x)  # up to layer3
        torch.testing.assert_close(enc(x).feature_map, expected, atol=1e-6, rtol=0)
    assert enc.config.num_tokens == (224 // 16) ** 2 and enc.config.feature_channels == 256
    with pytest.raises(ConfigError, match="stages"):
        ImageEncoderConfig(stages=5)
    with pytest.raises(ValueError, match=r"images: height and width must be >= 16"):
        enc(torch.zeros(1, 3, 8, 64))
