"""The 3-D ResNet video encoder against torchvision's video models with the same weights."""

from __future__ import annotations

import pytest
import torch
import torchvision

from hybridformer.config import ConfigError
from hybridformer.encoders import VideoEncoder, VideoEncoderConfig
from hybridformer.encoders.feature_tokens import sincos_position_embedding


def _reference(arch: str, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = getattr(torchvision.models.video, arch)(weights=None)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def _torchvision_features(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    body = torch.nn.Sequential(*list(model.children())[:-2])  # stem, layer1..4 (no avgpool, fc)
    return body(x)


@pytest.mark.parametrize(
    ("arch", "grid"), [("r3d_18", (1, 2, 2)), ("r2plus1d_18", (1, 2, 2)), ("mc3_18", (4, 2, 2))]
)
def test_feature_map_equals_torchvision(tmp_path, arch, grid):
    ref = _reference(arch, seed=0)
    path = tmp_path / f"{arch}.pth"
    torch.save(ref.state_dict(), path)
    enc = VideoEncoder(VideoEncoderConfig(arch=arch, d_model=16, weights=str(path))).eval()
    enc.init_weights()
    clips = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        out = enc(clips)
        expected = _torchvision_features(ref, clips)
    assert out.feature_map.shape == (2, 512, *grid)
    torch.testing.assert_close(out.feature_map, expected, atol=1e-6, rtol=0)
    t = grid[0] * grid[1] * grid[2]
    assert out.tokens.shape == (2, t, 16) and out.mask.all()
    flat = expected.flatten(2).transpose(1, 2) + sincos_position_embedding(grid, 512)  # (B, t*h*w, C)
    torch.testing.assert_close(out.tokens, enc.tokenizer.norm(enc.tokenizer.proj(flat)))


def test_grey_clip_with_rgb_weights_equals_rgb_model_on_repeated_channels(tmp_path):
    ref = _reference("r3d_18", seed=1)
    path = tmp_path / "r3d.pth"
    torch.save(ref.state_dict(), path)
    enc = VideoEncoder(VideoEncoderConfig(arch="r3d_18", in_channels=1, d_model=8, weights=str(path))).eval()
    enc.init_weights()
    grey = torch.rand(1, 1, 4, 32, 32)
    with torch.no_grad():
        expected = _torchvision_features(ref, grey.expand(-1, 3, -1, -1, -1))
        torch.testing.assert_close(enc(grey).feature_map, expected, atol=1e-5, rtol=1e-5)


def test_one_channel_stem_swapped_matches_torchvision_with_same_weights():
    ref = _reference("r2plus1d_18", seed=3)
    ref.stem[0] = torch.nn.Conv3d(1, 45, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False)
    enc = VideoEncoder(VideoEncoderConfig(arch="r2plus1d_18", in_channels=1, d_model=8)).eval()
    enc.trunk.load_state_dict({k: v for k, v in ref.state_dict().items() if not k.startswith("fc.")})
    x = torch.randn(1, 1, 8, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(enc(x).feature_map, _torchvision_features(ref, x), atol=1e-6, rtol=0)


@pytest.mark.parametrize("arch,depth,stages", [("r2plus1d_18", 18, 4), ("mc3_18", 10, 3)])
def test_meta_build_then_init_equals_eager_build(arch, depth, stages):
    config = VideoEncoderConfig(arch=arch, depth=depth, stages=stages, in_channels=1, d_model=8, frame_size=32)
    torch.manual_seed(11)
    eager = VideoEncoder(config)
    with torch.device("meta"):
        lazy = VideoEncoder(config)
    lazy.to_empty(device="cpu")
    torch.manual_seed(11)
    lazy.init_weights()
    a, b = eager.state_dict(), lazy.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_bad_input_names_the_argument():
    with pytest.raises(ConfigError, match="arch"):
        VideoEncoderConfig(arch="r3d_50")
    with pytest.raises(ConfigError, match="depth"):
        VideoEncoderConfig(depth=34)
    with pytest.raises(ValueError, match=r"clips: height and width must be >= 8"):
        VideoEncoder(VideoEncoderConfig(arch="mc3_18", depth=10, stages=3, d_model=8))(torch.zeros(1, 3, 4, 4, 32))
    enc = VideoEncoder(VideoEncoderConfig(arch="mc3_18", in_channels=1, d_model=8))
    with pytest.raises(ValueError, match=r"clips: expected a 5-D tensor \(B, C, T, H, W\)"):
        enc(torch.zeros(1, 1, 32, 32))
    with pytest.raises(ValueError, match="clips: the encoder takes 1-channel input"):
        enc(torch.zeros(1, 3, 4, 32, 32))


@pytest.mark.parametrize(("arch", "stages", "grid"), [("mc3_18", 3, (4, 4, 4)), ("r3d_18", 4, (1, 2, 2)),
                                                      ("r2plus1d_18", 2, (2, 8, 8))])
def test_depth10_trunk_equals_torchvisions_videoresnet_class_with_the_same_weights(tmp_path, arch, stages, grid):
    # depth 10 = torchvision's VideoResNet with the arch's conv makers and stem, one block per stage
    from torchvision.models.video import resnet as vr

    makers = {"r3d_18": ([vr.Conv3DSimple] * 4, vr.BasicStem), "r2plus1d_18": ([vr.Conv2Plus1D] * 4, vr.R2Plus1dStem),
              "mc3_18": ([vr.Conv3DSimple] + [vr.Conv3DNoTemporal] * 3, vr.BasicStem)}[arch]
    torch.manual_seed(9)
    ref = vr.VideoResNet(vr.BasicBlock, conv_makers=makers[0], layers=[1, 1, 1, 1], stem=makers[1])
    with torch.no_grad():
        for m in ref.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    ref.eval()
    path = tmp_path / f"{arch}-10.pth"
    torch.save(ref.state_dict(), path)
    config = VideoEncoderConfig(arch=arch, depth=10, stages=stages, d_model=16, weights=str(path), frame_size=32)
    enc = VideoEncoder(config).eval()
    clips = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        expected = torch.nn.Sequential(*list(ref.children())[: 1 + stages])(clips)  # stem, layer1..S
        out = enc(clips)
    assert out.feature_map.shape == (2, config.feature_channels, *grid)
    assert config.feature_channels == 512 >> (4 - stages)
    torch.testing.assert_close(out.feature_map, expected, atol=1e-6, rtol=0)
    assert out.tokens.shape == (2, grid[0] * grid[1] * grid[2], 16)
