"""Decode a base64 ``data:`` image of a chat request, within byte and pixel limits.

A decompression bomb is a small file whose header announces a huge image (a 50 kB PNG can inflate
to gigabytes). Pillow reads the header on ``Image.open`` without decoding pixels, so the size is
checked there, before ``load()`` allocates anything.
"""

from __future__ import annotations

import base64
import binascii
import io
import re

import torch
from torch import Tensor

from hybridformer.serve.errors import bad_request

__all__ = ["decode_image"]

_DATA_URL = re.compile(r"^data:(image/[A-Za-z0-9.+-]+)?(;[^,;]+)*;base64,", re.ASCII)


def decode_image(url: str, *, max_bytes: int, max_pixels: int, param: str) -> Tensor:
    """The image of a ``data:image/...;base64,...`` URL as a float (3, H, W) tensor in [0, 1].

    Args:
        url: the ``image_url.url`` of a content part.
        max_bytes: largest encoded image accepted (bytes after base64 decoding).
        max_pixels: largest width x height accepted, checked from the header before decoding.
        param: the request field, named in errors (``messages[0].content[1].image_url.url``).

    Raises:
        APIError: 400 for a URL that is not base64 data, bad base64, too many bytes or pixels, or an
            undecodable image.
    """
    from PIL import Image, UnidentifiedImageError

    match = _DATA_URL.match(url)
    if match is None:
        shown = url[:40] + ("..." if len(url) > 40 else "")
        raise bad_request(
            f"expected a base64 data URL (data:image/png;base64,...), got {shown!r}; remote URLs are not fetched",
            param, "invalid_image_url",
        )
    payload = url[match.end():]
    if len(payload) * 3 // 4 > max_bytes + 2:  # check the size before decoding anything
        raise bad_request(
            f"image is about {len(payload) * 3 // 4} bytes, more than max_image_bytes={max_bytes}",
            param, "image_too_large",
        )
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as err:
        raise bad_request(f"image is not valid base64: {err}", param, "invalid_image") from None
    if len(data) > max_bytes:
        raise bad_request(
            f"image is {len(data)} bytes, more than max_image_bytes={max_bytes}", param, "image_too_large"
        )
    try:
        with Image.open(io.BytesIO(data)) as image:  # reads the header only
            width, height = image.size
            if width * height > max_pixels:
                raise bad_request(
                    f"image is {width}x{height} = {width * height} pixels, more than max_image_pixels={max_pixels}",
                    param, "image_too_large",
                )
            image.load()
            rgb = image.convert("RGB")
    except Image.DecompressionBombError as err:  # Pillow's own header check, far above any sane limit
        raise bad_request(f"image is too large: {err}", param, "image_too_large") from None
    except UnidentifiedImageError:
        raise bad_request("image could not be decoded: not a known image format", param, "invalid_image") from None
    except (OSError, ValueError, SyntaxError) as err:
        raise bad_request(f"image could not be decoded: {err}", param, "invalid_image") from None
    pixels = torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8).view(height, width, 3)  # (H, W, 3)
    return pixels.permute(2, 0, 1).float() / 255.0  # (3, H, W)
