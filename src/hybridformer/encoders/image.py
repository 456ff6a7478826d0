"""Image encoder: a torchvision ResNet trunk whose last feature map becomes ``d_model`` tokens.

The trunk *is* ``torchvision.models.resnet{depth}(weights=None)`` with its average pool and classifier
removed, so its parameter names are torchvision's and a torchvision checkpoint loads as is. A 224×224
image gives a 7×7 map (stride 32), i.e. 49 tokens of 512 (depth 18/34) or 2048 (50/101/152) channels,
which :class:`~hybridformer.encoders.feature_tokens.FeatureMapTokenizer` turns into tokens.

Depth 10 is torchvision's ``ResNet`` class with one BasicBlock per stage
(``ResNet(BasicBlock, [1, 1, 1, 1])``, 4.9M parameters; torchvision has no builder for it). ``stages``
keeps the first 1..4 residual stages (layer1..layerS) and drops the rest, so a small image still gives a
grid: a 32×32 image through all four stages is one 1×1 cell, through three a 2×2 map of 256 channels
(the tiny flavor: 1.2M trunk parameters).

No CNN weights ship offline (DATA.md): the trunk starts from torchvision's random initialisation unless
``weights`` names a local torchvision state dict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torchvision
from torch import Tensor, nn

from hybridformer.config import check

from .feature_tokens import CNNTokenEncoder, VisionEncoderOutput, check_input

__all__ = ["ImageEncoderConfig", "ImageEncoder", "ImageEncoderOutput", "RESNET_DEPTHS", "RESNET_STAGES"]

ImageEncoderOutput = VisionEncoderOutput
"""(tokens (B, T, d_model), mask (B, T) bool, feature_map (B, C, h, w))."""

RESNET_DEPTHS = (10, 18, 34, 50, 101, 152)
"""ResNet depths: 18..152 torchvision's builders, 10 its ``ResNet`` class with [1, 1, 1, 1] BasicBlocks;
10/18/34 use BasicBlocks (512 channels out of layer4), 50+ Bottlenecks (2048)."""

RESNET_STAGES = (1, 2, 3, 4)
"""How many residual stages (layer1..layer4) a trunk may keep."""


@dataclass
class ImageEncoderConfig:
    """Shape of the ResNet image encoder."""

    depth: Literal[10, 18, 34, 50, 101, 152] = 152
    """ResNet depth; 152 is the article's encoder (58M trunk parameters), 18 the small one for tests,
    10 (one BasicBlock per stage, torchvision's ``ResNet`` class) the tiny flavor's."""
    stages: Literal[1, 2, 3, 4] = 4
    """Residual stages kept (layer1..layer{stages}); 4 = the whole trunk (stride 32). Each stage dropped
    halves the stride and the channels: 3 gives stride 16 and 256 (BasicBlock) / 1024 (Bottleneck)
    channels, so a 32×32 image gives 2×2 tokens instead of one."""
    in_channels: Literal[1, 3] = 3
    """Input channels: 3 for RGB, 1 for grey images (MNIST/Fashion-MNIST); 1 replaces the first conv."""
    d_model: int = 768
    """Width of the output tokens (the text model's hidden size)."""
    weights: str | None = None
    """Optional local torchvision ResNet state dict (``.safetensors``, or ``.pth``/``.pt`` loaded with
    ``weights_only=True``), applied by ``init_weights()``; None = random init. Its classifier (``fc.*``)
    is ignored; 3-channel weights are adapted to ``in_channels=1`` by summing the first conv over RGB."""
    image_size: int = 224
    """Side the inputs are resized to by the data pipeline; the encoder itself accepts any side >= 32
    (tokens = ceil(side/32)²) since the position embedding is computed for the actual grid."""
    layer_norm_eps: float = 1e-5
    """Epsilon of the output LayerNorm."""

    def __post_init__(self) -> None:
        check(self.depth in RESNET_DEPTHS, "depth", f"must be one of {RESNET_DEPTHS}, got {self.depth}")
        check(self.in_channels in (1, 3), "in_channels", f"must be 1 or 3, got {self.in_channels}")
        check(self.d_model >= 1, "d_model", f"must be >= 1, got {self.d_model}")
        check(self.stages in RESNET_STAGES, "stages", f"must be one of {RESNET_STAGES}, got {self.stages}")
        check(self.image_size >= self.stride, "image_size",
              f"must be >= {self.stride} (the trunk's stride), got {self.image_size}")

    @property
    def stride(self) -> int:
        """Pixels per feature-map cell: 32 with all four stages, halved per stage dropped."""
        return 2 ** (self.stages + 1)

    @property
    def feature_channels(self) -> int:
        """Channels of the last feature map: 512 for depth 10/18/34, 2048 for 50/101/152 (all stages),
        halved per stage dropped."""
        return (512 if self.depth < 50 else 2048) >> (4 - self.stages)

    @property
    def num_tokens(self) -> int:
        """Tokens per ``image_size``² image (7×7 = 49 at 224 with all stages)."""
        side = -(-self.image_size // self.stride)
        return side * side


def build_resnet_trunk(depth: int, in_channels: int, stages: int = 4) -> torchvision.models.ResNet:
    """torchvision's ResNet of ``depth`` without avgpool/fc and the stages after ``stages``; a
    1-channel first conv when asked. Depth 10 is ``torchvision.models.resnet.ResNet(BasicBlock, [1]*4)``."""
    if depth == 10:
        trunk = torchvision.models.resnet.ResNet(torchvision.models.resnet.BasicBlock, [1, 1, 1, 1])
    else:
        trunk = getattr(torchvision.models, f"resnet{depth}")(weights=None)
    del trunk.avgpool, trunk.fc  # the feature map is the output; nothing may read these
    for stage in range(stages + 1, 5):
        delattr(trunk, f"layer{stage}")
    if in_channels != 3:
        trunk.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return trunk


def resnet_features(trunk: torchvision.models.ResNet, x: Tensor, stages: int = 4) -> Tensor:
    """torchvision's ``ResNet._forward_impl`` up to layer{stages}: (B, C_in, H, W) -> (B, C, H/s, W/s)."""
    x = trunk.maxpool(trunk.relu(trunk.bn1(trunk.conv1(x))))
    for stage in range(1, stages + 1):
        x = getattr(trunk, f"layer{stage}")(x)
    return x


class ImageEncoder(CNNTokenEncoder):
    """ResNet feature map -> (B, h*w, d_model) tokens with a 2-D sin-cos position embedding.

    Example::

        enc = ImageEncoder(ImageEncoderConfig(depth=18, in_channels=1, d_model=256))
        enc.init_weights()
        out = enc(images)            # images (B, 1, 224, 224) -> out.tokens (B, 49, 256)
    """

    first_conv = "conv1.weight"

    def __init__(self, config: ImageEncoderConfig) -> None:
        super().__init__(
            lambda: build_resnet_trunk(config.depth, config.in_channels, config.stages),
            in_channels=config.in_channels,
            feature_channels=config.feature_channels, d_model=config.d_model,
            layer_norm_eps=config.layer_norm_eps, weights=config.weights, stages=config.stages,
        )
        self.config = config

    def features(self, images: Tensor) -> Tensor:
        """The trunk's last feature map: (B, C_in, H, W) -> (B, C, ceil(H/s), ceil(W/s)), s = ``config.stride``."""
        config = self.config
        check_input(images, ndim=4, channels=config.in_channels, name="images", layout="(B, C, H, W)",
                    min_side=config.stride)
        return resnet_features(self.trunk, images, config.stages)
