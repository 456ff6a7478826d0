"""Video encoder: a torchvision 3-D ResNet trunk whose spatio-temporal feature map becomes tokens.

The trunk *is* ``torchvision.models.video.{r3d_18, r2plus1d_18, mc3_18}(weights=None)`` without its
average pool and classifier (torchvision's parameter names, so its checkpoints load as is). Input clips
are (B, C, T, H, W), torchvision's layout. The map (B, 512, t, h, w) becomes t*h*w tokens with a 3-D
(time, height, width) sin-cos position embedding. Strides: r3d_18 and r2plus1d_18 divide T by 8 and
H, W by 16; mc3_18 convolves time only in its stem, so t = T (a 16-frame 112² clip: 2×7×7 = 98 tokens
for r3d/r(2+1)d, 16×7×7 for mc3).

``depth=10`` builds the same architecture with one BasicBlock per stage: torchvision's ``VideoResNet``
class with the arch's own conv makers and stem and ``layers=[1, 1, 1, 1]`` (torchvision has no builder
for it). ``stages`` keeps the first 1..4 residual stages; each stage dropped halves the channels and the
spatial stride (and, for r3d / r(2+1)d, the temporal one). The tiny flavor's mc3 of depth 10 with 3
stages has 1.4M parameters and turns an 8-frame 32×32 clip into 8×4×4 tokens of 256 channels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torchvision
from torch import Tensor, nn
from torchvision.models.video import resnet as video_resnet

from hybridformer.config import check

from .feature_tokens import CNNTokenEncoder, VisionEncoderOutput, check_input

__all__ = ["VideoEncoderConfig", "VideoEncoder", "VideoEncoderOutput", "VIDEO_ARCHS", "VIDEO_DEPTHS"]

VideoEncoderOutput = VisionEncoderOutput
"""(tokens (B, T, d_model), mask (B, T) bool, feature_map (B, C, t, h, w))."""

VIDEO_ARCHS = ("r3d_18", "r2plus1d_18", "mc3_18")
"""torchvision's video ResNets: full 3-D convs, (2+1)-D factorised convs, 3-D only in the stem and layer1."""

VIDEO_DEPTHS = (10, 18)
"""18: torchvision's builders (two BasicBlocks per stage); 10: one BasicBlock per stage."""

_ARCH_PARTS = {  # arch -> (conv maker of each stage, stem), as torchvision's builders pass them to VideoResNet
    "r3d_18": ([video_resnet.Conv3DSimple] * 4, video_resnet.BasicStem),
    "r2plus1d_18": ([video_resnet.Conv2Plus1D] * 4, video_resnet.R2Plus1dStem),
    "mc3_18": ([video_resnet.Conv3DSimple] + [video_resnet.Conv3DNoTemporal] * 3, video_resnet.BasicStem),
}


@dataclass
class VideoEncoderConfig:
    """Shape of the 3-D ResNet video encoder."""

    arch: Literal["r3d_18", "r2plus1d_18", "mc3_18"] = "r3d_18"
    """torchvision video architecture (the conv makers and stem; 512 output channels with all stages)."""
    depth: Literal[10, 18] = 18
    """18: the arch's torchvision builder (two BasicBlocks per stage); 10: ``VideoResNet`` with the arch's
    conv makers and stem and one BasicBlock per stage (the tiny flavor's)."""
    stages: Literal[1, 2, 3, 4] = 4
    """Residual stages kept (layer1..layer{stages}); 4 = the whole trunk. Each stage dropped halves the
    output channels (3: 256) and the stride."""
    in_channels: Literal[1, 3] = 3
    """Clip channels: 3 for RGB, 1 for grey (Moving-MNIST); 1 replaces the stem's first conv."""
    d_model: int = 768
    """Width of the output tokens."""
    weights: str | None = None
    """Optional local torchvision state dict of ``arch`` (``.safetensors`` or ``.pth``/``.pt`` loaded
    with ``weights_only=True``), applied by ``init_weights()``; ``fc.*`` is ignored and 3-channel
    weights are adapted to 1 channel by summing the first conv over RGB."""
    num_frames: int = 16
    """Frames per clip the data pipeline produces (torchvision's Kinetics models use 16)."""
    frame_size: int = 112
    """Side frames are resized to by the data pipeline (torchvision's video models use 112)."""
    layer_norm_eps: float = 1e-5
    """Epsilon of the output LayerNorm."""

    def __post_init__(self) -> None:
        check(self.arch in VIDEO_ARCHS, "arch", f"must be one of {VIDEO_ARCHS}, got {self.arch!r}")
        check(self.in_channels in (1, 3), "in_channels", f"must be 1 or 3, got {self.in_channels}")
        check(self.d_model >= 1, "d_model", f"must be >= 1, got {self.d_model}")
        check(self.num_frames >= 1, "num_frames", f"must be >= 1, got {self.num_frames}")
        check(self.depth in VIDEO_DEPTHS, "depth", f"must be one of {VIDEO_DEPTHS}, got {self.depth}")
        check(self.stages in (1, 2, 3, 4), "stages", f"must be one of (1, 2, 3, 4), got {self.stages}")
        check(self.frame_size >= self.stride, "frame_size",
              f"must be >= {self.stride} (the trunk's spatial stride), got {self.frame_size}")

    @property
    def stride(self) -> int:
        """Spatial pixels per feature-map cell: 16 with all four stages, halved per stage dropped."""
        return 2**self.stages

    @property
    def feature_channels(self) -> int:
        """Channels of the last feature map: 512 with all four stages (every arch), halved per stage dropped."""
        return 512 >> (4 - self.stages)


def build_video_trunk(arch: str, in_channels: int, depth: int = 18, stages: int = 4) -> nn.Module:
    """torchvision's video ResNet ``arch`` (``depth`` 18: its builder; 10: ``VideoResNet`` with one block
    per stage) without avgpool/fc and the stages after ``stages``; a ``in_channels``-input stem conv."""
    if depth == 18:
        trunk = getattr(torchvision.models.video, arch)(weights=None)
    else:
        conv_makers, stem = _ARCH_PARTS[arch]
        trunk = video_resnet.VideoResNet(video_resnet.BasicBlock, conv_makers, [1, 1, 1, 1], stem)
    del trunk.avgpool, trunk.fc
    for stage in range(stages + 1, 5):
        delattr(trunk, f"layer{stage}")
    if in_channels != 3:
        old = trunk.stem[0]
        trunk.stem[0] = nn.Conv3d(
            in_channels, old.out_channels, old.kernel_size, stride=old.stride, padding=old.padding, bias=False
        )
    return trunk


class VideoEncoder(CNNTokenEncoder):
    """3-D ResNet feature map -> (B, t*h*w, d_model) tokens with a (time, h, w) sin-cos embedding."""

    first_conv = "stem.0.weight"

    def __init__(self, config: VideoEncoderConfig) -> None:
        super().__init__(
            lambda: build_video_trunk(config.arch, config.in_channels, config.depth, config.stages),
            in_channels=config.in_channels,
            feature_channels=config.feature_channels, d_model=config.d_model,
            layer_norm_eps=config.layer_norm_eps, weights=config.weights, stages=config.stages,
        )
        self.config = config

    def features(self, clips: Tensor) -> Tensor:
        """The trunk's last feature map: (B, C_in, T, H, W) -> (B, C, t, h, w)."""
        config = self.config
        check_input(clips, ndim=5, channels=config.in_channels, name="clips", layout="(B, C, T, H, W)",
                    min_side=config.stride)
        x = self.trunk.stem(clips)
        for stage in range(1, config.stages + 1):
            x = getattr(self.trunk, f"layer{stage}")(x)
        return x
