"""Images and videos from user files, with limits: every bad input is one ``ValueError`` naming the file.

* :func:`load_image` — any format Pillow reads (PNG, JPEG, GIF, BMP, WebP, ...), from a path or bytes.
  The pixel count is checked from the *header* before a single pixel is decoded, so a decompression
  bomb (a small file that decodes to gigapixels) is refused without the memory it would take; Pillow's
  own ``DecompressionBombError`` is caught and reported the same way.
* :func:`load_video` — a ``.npy`` array (T, H, W) or (T, H, W, C) (its header is read first, memory
  mapped, to check the size), a folder of frame images (sorted by name), or a video file (``.mp4``,
  ``.avi``, ``.mkv``, ``.webm``, ``.mov``) through PyAV (``pip install av==18.1.0``) when it is installed.

Both return uint8 tensors: an image (C, H, W), a clip (C, T, H, W) — the layout torchvision's video
models take (add the batch dim).
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Union

import numpy as np
import torch
from torch import Tensor

__all__ = ["ImageInputError", "load_image", "load_video", "MAX_PIXELS", "FRAME_SUFFIXES", "VIDEO_SUFFIXES"]

MAX_PIXELS = 25_000_000
"""Default pixel limit per image or frame (5000×5000); Pillow's own bomb limit is ~89M."""
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
"""Files of a frame folder that are read as frames."""
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov")
"""Container formats read through PyAV."""

Source = Union[str, Path, bytes]
Size = Union[int, tuple[int, int], None]


class ImageInputError(ValueError):
    """An image or video input is unreadable, truncated, too large or of the wrong shape (names the file)."""


def _label(source: Source, name: str | None) -> str:
    if name is not None:
        return name
    return f"<{len(source)} bytes>" if isinstance(source, bytes) else str(source)


def _check_channels(channels: int | None, what: str = "channels") -> None:
    if channels not in (None, 1, 3):
        raise ImageInputError(f"{what}: must be 1 (grey), 3 (RGB) or None (keep the file's), got {channels!r}")


def _hw(size: Size) -> tuple[int, int] | None:
    if size is None:
        return None
    h, w = (size, size) if isinstance(size, int) else size
    if h < 1 or w < 1:
        raise ImageInputError(f"size: must be positive, got {size!r}")
    return h, w


def load_image(
    source: Source, *, max_pixels: int = MAX_PIXELS, channels: int | None = 3, size: Size = None, name: str | None = None
) -> Tensor:
    """Decode one image into a uint8 tensor (C, H, W).

    Args:
        source: a file path, or the encoded bytes (e.g. an upload).
        max_pixels: refuse images with more than this many pixels (checked before decoding).
        channels: 3 converts to RGB, 1 to grey; None keeps the file's channels, which must then be 1
            (L) or 3 (RGB) — an RGBA or CMYK file is refused with a hint to pass ``channels``.
        size: resize to ``size``×``size`` or (height, width) with bilinear filtering; None keeps it.
        name: how to call the input in errors (defaults to the path, or ``<N bytes>``).

    Raises:
        ImageInputError (a ValueError): not an image, truncated/corrupt, over ``max_pixels``, wrong
            channel count; the message names the input.
    """
    from PIL import Image, UnidentifiedImageError

    _check_channels(channels)
    label = _label(source, name)
    target = _hw(size)
    if not isinstance(source, bytes) and not Path(source).is_file():
        raise ImageInputError(f"{label}: image file not found")
    stream = io.BytesIO(source) if isinstance(source, bytes) else Path(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(stream)  # reads the header only
    except UnidentifiedImageError:
        raise ImageInputError(f"{label}: not an image Pillow can read (unknown format or not an image file)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageInputError(f"{label}: refused as a possible decompression bomb (Pillow's pixel limit)") from None
    except OSError as err:
        raise ImageInputError(f"{label}: cannot read the image header ({err})") from None
    with img:
        width, height = img.size
        if width * height > max_pixels:
            raise ImageInputError(
                f"{label}: {width}x{height} = {width * height:,} pixels is over the limit of {max_pixels:,} "
                "(max_pixels); refused before decoding"
            )
        try:
            img.load()  # decodes now: a truncated or corrupt stream fails here
        except (OSError, SyntaxError, ValueError) as err:
            raise ImageInputError(f"{label}: truncated or corrupt image data ({err})") from None
        if channels is None:
            if img.mode not in ("L", "RGB"):
                bands = len(img.getbands())
                raise ImageInputError(
                    f"{label}: has {bands} channels (mode {img.mode}); expected 1 or 3 — pass channels=1 or 3 to convert"
                )
            converted = img
        else:
            converted = img.convert("L" if channels == 1 else "RGB")
        if target is not None:
            converted = converted.resize((target[1], target[0]), Image.Resampling.BILINEAR)
        array = np.asarray(converted, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()  # (H, W, C) -> (C, H, W)


def _video_npy(path: Path, max_pixels: int, max_frames: int | None) -> np.ndarray:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)  # the header only, until sliced
    except Exception as err:  # noqa: BLE001 - any reader failure means "not a readable .npy"
        raise ImageInputError(f"{path}: not a readable .npy array ({err})") from None
    if array.ndim not in (3, 4) or (array.ndim == 4 and array.shape[3] not in (1, 3)):
        raise ImageInputError(
            f"{path}: expected a (T, H, W) or (T, H, W, C) array with C = 1 or 3, got shape {tuple(array.shape)}"
        )
    if array.dtype != np.uint8:
        raise ImageInputError(f"{path}: expected uint8 pixels (0..255), got dtype {array.dtype}")
    if array.shape[1] * array.shape[2] > max_pixels:
        raise ImageInputError(f"{path}: frames of {array.shape[2]}x{array.shape[1]} are over max_pixels={max_pixels:,}")
    frames = array[:max_frames] if max_frames is not None else array
    frames = np.array(frames)  # copy out of the memory map (writable, contiguous)
    return frames if frames.ndim == 4 else frames[..., None]  # (T, H, W, C)


def _video_container(path: Path, max_pixels: int, max_frames: int | None) -> np.ndarray:
    try:
        import av
    except ImportError:
        raise ImageInputError(
            f"{path}: reading {path.suffix} video needs PyAV (pip install av==18.1.0); or pass a .npy or a frame folder"
        ) from None
    frames = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ImageInputError(f"{path}: holds no video stream")
            stream = container.streams.video[0]
            if stream.width * stream.height > max_pixels:
                raise ImageInputError(f"{path}: frames of {stream.width}x{stream.height} are over max_pixels={max_pixels:,}")
            for frame in container.decode(stream):
                frames.append(frame.to_ndarray(format="rgb24"))
                if max_frames is not None and len(frames) >= max_frames:
                    break
    except av.error.FFmpegError as err:
        raise ImageInputError(f"{path}: not a readable video ({err})") from None
    return np.stack(frames) if frames else np.zeros((0, 1, 1, 3), np.uint8)


def _video_folder(folder: Path, max_pixels: int, max_frames: int | None) -> np.ndarray:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in FRAME_SUFFIXES)
    if max_frames is not None:
        files = files[:max_frames]
    frames = [load_image(p, max_pixels=max_pixels, channels=None).permute(1, 2, 0).numpy() for p in files]
    for p, f in zip(files, frames):
        if f.shape != frames[0].shape:
            raise ImageInputError(
                f"{p}: frame of shape {f.shape[:2]} x {f.shape[2]} channels differs from the first frame "
                f"{files[0].name} ({frames[0].shape[:2]} x {frames[0].shape[2]}); all frames must match"
            )
    return np.stack(frames) if frames else np.zeros((0, 1, 1, 1), np.uint8)


def load_video(
    source: str | Path,
    *,
    min_frames: int = 1,
    max_frames: int | None = None,
    channels: int | None = None,
    size: Size = None,
    max_pixels: int = MAX_PIXELS,
) -> Tensor:
    """Read a clip into a uint8 tensor (C, T, H, W).

    Args:
        source: a ``.npy`` file (T, H, W) or (T, H, W, C), a folder of frame images, or a video file
            (needs PyAV).
        min_frames: fewer frames than this is an error (a clip the encoder cannot use).
        max_frames: keep only the first ``max_frames`` frames (None = all).
        channels: 1 or 3 converts (grey = ITU-R 601 luma, as Pillow's "L"); None keeps the source's.
        size: resize every frame to ``size``×``size`` or (height, width), bilinear; None keeps it.
        max_pixels: pixel limit per frame.

    Raises:
        ImageInputError (a ValueError) naming the file: unreadable, wrong shape/dtype, too few frames,
            frames that differ in size, frames over the pixel limit.
    """
    _check_channels(channels)
    if min_frames < 1:
        raise ImageInputError(f"min_frames: must be >= 1, got {min_frames}")
    path = Path(source)
    if path.is_dir():
        frames = _video_folder(path, max_pixels, max_frames)
    elif not path.is_file():
        raise ImageInputError(f"{path}: video file or frame folder not found")
    elif path.suffix.lower() == ".npy":
        frames = _video_npy(path, max_pixels, max_frames)
    elif path.suffix.lower() in VIDEO_SUFFIXES:
        frames = _video_container(path, max_pixels, max_frames)
    else:
        raise ImageInputError(
            f"{path}: unsupported video input {path.suffix!r}; use a .npy array, a folder of frames or {VIDEO_SUFFIXES}"
        )
    if frames.shape[0] < min_frames:
        raise ImageInputError(f"{path}: has {frames.shape[0]} frames, fewer than min_frames={min_frames}")
    clip = torch.from_numpy(frames).permute(3, 0, 1, 2).float()  # (T, H, W, C) -> (C, T, H, W)
    if channels == 1 and clip.shape[0] == 3:
        clip = (clip * torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1, 1)).sum(0, keepdim=True)
    elif channels == 3 and clip.shape[0] == 1:
        clip = clip.expand(3, -1, -1, -1)
    target = _hw(size)
    if target is not None and tuple(clip.shape[2:]) != target:
        clip = torch.nn.functional.interpolate(clip, size=target, mode="bilinear", align_corners=False)
    return clip.round().clamp(0, 255).to(torch.uint8).contiguous()
