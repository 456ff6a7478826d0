"""Video encoder: a torchvision 3-D ResNet trunk whose spatio-temporal feature map becomes tokens.

The trunk *is* ``torchvision.models.video.{r3d_18, r2plus1d_18, mc3_18}(weights=None)`` without its
average pool and classifier (torchvision's parameter names, so its checkpoints load as is). Input clips
are (B, C, T, H, W), torchvision's layout. The map (B, 512, t, h, w) becomes t*h*w tokens with a 3-D
(time, height, width) sin-cos position embedding. Strides: r3d_18 and r2plus1d_18 divide T by 8 and
H, W by 16; mc3_18 convolves time only in its stem, so t = T (a 16-frame 112² clip: 2×7×7 = 98 tokens
for r3d/r(2+1)d, 16×7×7 for mc3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torchvision
from torch import Tensor, nn

from hybridformer.config import check

from .feature_tokens import CNNTokenEncoder, VisionEncoderOutput, check_input

__all__ = ["VideoEncoderConfig", "VideoEncoder", "VideoEncoderOutput", "VIDEO_ARCHS"]

VideoEncoderOutput = VisionEncoderOutput
"""(tokens (B, T, d_model), mask (B, T) bool, feature_map (B, 512, t, h, w))."""

VIDEO_ARCHS = ("r3d_18", "r2plus1d_18", "mc3_18")
"""torchvision's video ResNets: full 3-D convs, (2+1)-D factorised convs, 3-D only in the stem."""


@dataclass
class VideoEncoderConfig:
    """Shape of the 3-D ResNet video encoder."""

    arch: Literal["r3d_18", "r2plus1d_18", "mc3_18"] = "r3d_18"
    """torchvision video architecture (all 18 layers, 512 output channels)."""
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
        check(self.frame_size >= 16, "frame_size", f"must be >= 16 (the trunk's stride), got {self.frame_size}")

    @property
    def feature_channels(self) -> int:
        """Channels of the last feature map (512 for all three archs)."""
        return 512


def build_video_trunk(arch: str, in_channels: int) -> nn.Module:
    """torchvision's video ResNet ``arch`` without avgpool/fc; a ``in_channels``-input stem conv."""
    trunk = getattr(torchvision.models.video, arch)(weights=None)
    del trunk.avgpool, trunk.fc
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
            lambda: build_video_trunk(config.arch, config.in_channels),
            in_channels=config.in_channels,
            feature_channels=config.feature_channels, d_model=config.d_model,
            layer_norm_eps=config.layer_norm_eps, weights=config.weights,
        )
        self.config = config

    def features(self, clips: Tensor) -> Tensor:
        """The trunk's last feature map: (B, C_in, T, H, W) -> (B, 512, t, h, w)."""
        check_input(clips, ndim=5, channels=self.config.in_channels, name="clips", layout="(B, C, T, H, W)", min_side=16)
        x = self.trunk.stem(clips)
        return self.trunk.layer4(self.trunk.layer3(self.trunk.layer2(self.trunk.layer1(x))))
