"""Turning a CNN's last feature map into transformer tokens, shared by the image and video encoders.

A feature map (B, C, *grid) — grid (h, w) for images, (t, h, w) for clips — is flattened to
(B, prod(grid), C) tokens, a fixed sin-cos position embedding over the grid is added, and a Linear +
LayerNorm brings them to ``d_model``.

Why sin-cos and not learned positions: the grid depends on the input size (224² gives 7×7 tokens,
112² gives 4×4, a 16-frame clip a different t), and a fixed embedding is defined for every grid
without interpolating a learned table; it has no parameters, so a meta-device build needs nothing
initialised for it, and it is what MAE / ViTDet use for 2-D grids. Each axis gets an even share of the
channels and its own 1-D sin-cos code (MAE's ``get_2d_sincos_pos_embed``, extended to any number
of axes).

Also here: reading a torchvision weights file (safetensors, or a ``.pth`` through
``torch.load(weights_only=True)``, never pickle) and adapting its first convolution to 1-channel input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn

from hybridformer.initialization import allocating

__all__ = [
    "VisionEncoderOutput",
    "FeatureMapTokenizer",
    "sincos_position_embedding",
    "read_weight_file",
    "load_trunk_weights",
    "check_input",
    "init_torchvision_cnn",
    "CNNTokenEncoder",
]


@dataclass
class VisionEncoderOutput:
    """What the image and video encoders return."""

    tokens: Tensor
    """(B, T, d_model) projected, normalised tokens, T = prod(grid)."""
    mask: Tensor
    """(B, T) bool, True = a real token (every token of a CNN grid is real; the fusion takes masks from
    every modality alike)."""
    feature_map: Tensor
    """(B, C, *grid) the trunk's last feature map, before tokens, positions and projection."""


def _sincos_1d(positions: Tensor, dim: int) -> Tensor:
    """(n,) positions -> (n, dim) [sin | cos] code with frequencies 1 / 10000^(2i/dim) (dim even)."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64, device=positions.device) / (dim / 2))
    angles = positions.to(torch.float64)[:, None] * omega[None, :]  # (n, dim/2)
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def sincos_position_embedding(
    grid: tuple[int, ...], dim: int, *, device: torch.device | None = None, dtype: torch.dtype = torch.float32
) -> Tensor:
    """A fixed sin-cos embedding of every cell of ``grid``, flattened row-major: (prod(grid), dim).

    The channels are split over the axes in even shares (the first axis takes any remainder), each
    share holding that axis's 1-D sin-cos code, so the embedding of cell (i, j, ...) is the
    concatenation [code_0(i) | code_1(j) | ...].

    Args:
        grid: the size of each axis, e.g. (h, w) or (t, h, w).
        dim: channels; must be even and at least 2 per axis.
    """
    n_axes = len(grid)
    if dim % 2 or dim < 2 * n_axes:
        raise ValueError(f"dim: must be even and >= {2 * n_axes} for a {n_axes}-axis grid, got {dim}")
    share = 2 * (dim // (2 * n_axes))
    shares = [dim - share * (n_axes - 1)] + [share] * (n_axes - 1)
    axes = torch.meshgrid(*(torch.arange(n, device=device) for n in grid), indexing="ij")
    codes = [_sincos_1d(axis.reshape(-1), d) for axis, d in zip(axes, shares)]
    return torch.cat(codes, dim=1).to(dtype)  # (prod(grid), dim)


class FeatureMapTokenizer(nn.Module):
    """(B, C, *grid) feature map -> (B, prod(grid), d_model): flatten, + sin-cos positions, Linear, LayerNorm."""

    def __init__(self, in_channels: int, d_model: int, layer_norm_eps: float = 1e-5) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.proj = nn.Linear(in_channels, d_model)
        self.norm = nn.LayerNorm(d_model, eps=layer_norm_eps)

    def init_weights(self) -> None:
        # The same N(0, 0.02) as the text embeddings, so image tokens start on the text tokens' scale.
        nn.init.normal_(self.proj.weight, std=0.02)
        nn.init.zeros_(self.proj.bias)
        self.norm.reset_parameters()

    def forward(self, feature_map: Tensor) -> Tensor:
        grid = tuple(feature_map.shape[2:])
        tokens = feature_map.flatten(2).transpose(1, 2)  # (B, C, *grid) -> (B, prod(grid), C)
        pos = sincos_position_embedding(grid, self.in_channels, device=tokens.device, dtype=tokens.dtype)
        return self.norm(self.proj(tokens + pos))  # (B, T, d_model)


def init_torchvision_cnn(module: nn.Module) -> None:
    """torchvision's ResNet / VideoResNet initialisation, applied in their module order.

    Convolutions: Kaiming normal (fan_out, ReLU), bias 0; BatchNorms: weight 1, bias 0 and fresh running
    statistics (``reset_parameters``; needed after ``to_empty``, where the buffers are garbage).
    ``zero_init_residual`` is off in torchvision's builders, so it is off here.
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_parameters()


def read_weight_file(path: str | Path) -> dict[str, Tensor]:
    """A state dict from a ``.safetensors`` file or a torchvision ``.pth``/``.pt`` (loaded weights_only).

    Raises:
        ValueError: the file is missing or is not a readable tensor file; the message names it.
    """
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"weights: file not found: {file}")
    try:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(file))
        else:
            state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - every reader error means the same thing to the user
        raise ValueError(f"weights: {file} is not a readable safetensors/torch state dict ({err})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"weights: {file} does not hold a flat {{name: tensor}} state dict")
    return state


def load_trunk_weights(
    trunk: nn.Module, path: str | Path, *, first_conv: str, in_channels: int, drop_prefixes: tuple[str, ...] = ("fc.",)
) -> None:
    """Load a torchvision checkpoint into ``trunk`` (a torchvision model without its head).

    Keys under ``drop_prefixes`` (the classifier) are ignored. When the checkpoint's first convolution
    ``first_conv`` has 3 input channels and the trunk takes 1, its weights are summed over RGB: a grey
    image x then gives exactly the activations the 3-channel network gives for (x, x, x), which keeps
    the pretrained BatchNorm statistics valid (an average would scale the first layer's output by 1/3;
    timm's ``adapt_input_conv`` also sums).

    Raises:
        ValueError: the file is unreadable, or its keys/shapes do not match the trunk (names the file).
    """
    state = {k: v for k, v in read_weight_file(path).items() if not k.startswith(drop_prefixes)}
    conv = state.get(first_conv)
    if conv is not None and conv.shape[1] == 3 and in_channels == 1:
        state[first_conv] = conv.sum(dim=1, keepdim=True)
    expected = trunk.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"weights: {path} does not match the trunk: missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
            f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''}"
        )
    wrong = [k for k, v in state.items() if v.shape != expected[k].shape]
    if wrong:
        k = wrong[0]
        raise ValueError(
            f"weights: {path}: {k} has shape {tuple(state[k].shape)}, the trunk expects {tuple(expected[k].shape)}"
            + (" (a different depth or arch?)" if len(wrong) > 1 else "")
        )
    with torch.no_grad():
        trunk.load_state_dict(state, strict=True)


def check_input(x: Tensor, *, ndim: int, channels: int, name: str, layout: str, min_side: int) -> None:
    """Raise a ValueError naming ``name`` unless ``x`` is (B, channels, ...) with ``ndim`` dims."""
    if x.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D tensor {layout}, got shape {tuple(x.shape)}")
    if x.shape[1] != channels:
        raise ValueError(f"{name}: the encoder takes {channels}-channel input {layout}, got {x.shape[1]} channels")
    if min(x.shape[-2:]) < min_side:
        raise ValueError(f"{name}: height and width must be >= {min_side} pixels, got {tuple(x.shape[-2:])}")
    if not math.prod(x.shape):
        raise ValueError(f"{name}: empty tensor of shape {tuple(x.shape)}")


class CNNTokenEncoder(nn.Module):
    """What the image and video encoders share: a torchvision CNN trunk, then :class:`FeatureMapTokenizer`.

    Subclasses give a trunk builder, name its first convolution's state-dict key (``first_conv``,
    adapted to 1-channel input when loading RGB weights) and implement :meth:`features`. A trunk cut
    after ``stages`` residual stages ignores the later stages' keys (``layer{s}.*``) of a checkpoint. As every
    hybridformer model, the constructor allocates without drawing random numbers, then calls
    :meth:`init_weights`; so an eager build under seed s equals a meta build + ``to_empty`` + seed s +
    ``init_weights()``.
    """

    first_conv: str
    """State-dict key of the trunk's first convolution weight."""

    def __init__(self, build_trunk: Callable[[], nn.Module], *, in_channels: int, feature_channels: int,
                 d_model: int, layer_norm_eps: float, weights: str | None, stages: int = 4) -> None:  # fmt: skip
        super().__init__()
        self._in_channels, self._weights = in_channels, weights
        self._ignored = ("fc.", *(f"layer{s}." for s in range(stages + 1, 5)))  # checkpoint keys not in the trunk
        with allocating():  # torch's default inits must not advance the RNG (hybridformer.initialization)
            self.trunk = build_trunk()
            self.tokenizer = FeatureMapTokenizer(feature_channels, d_model, layer_norm_eps)
        self.init_weights()

    def init_weights(self) -> None:
        """torchvision's init for the trunk (or the ``weights`` file), N(0, 0.02) for the projection."""
        init_torchvision_cnn(self.trunk)
        # on the meta device there is nothing to load into: to_empty() + init_weights() loads then
        if self._weights is not None and not self.tokenizer.proj.weight.is_meta:
            self.load_torchvision_weights(self._weights)
        self.tokenizer.init_weights()

    def load_torchvision_weights(self, path: str | Path) -> None:
        """Load a torchvision state dict of the trunk's architecture (its classifier ``fc.*`` and any
        stage the trunk dropped ignored)."""
        load_trunk_weights(self.trunk, path, first_conv=self.first_conv, in_channels=self._in_channels,
                           drop_prefixes=self._ignored)

    def features(self, x: Tensor) -> Tensor:
        """The trunk's last feature map (B, C, *grid)."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> VisionEncoderOutput:
        """Encode a batch: images (B, C_in, H, W) or clips (B, C_in, T, H, W), normalised for the trunk."""
        feature_map = self.features(x)
        tokens = self.tokenizer(feature_map)  # (B, prod(grid), d_model)
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        return VisionEncoderOutput(tokens=tokens, mask=mask, feature_map=feature_map)
