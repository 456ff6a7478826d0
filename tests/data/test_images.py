"""Images and videos from real files made in tmp_path: good ones decode exactly, bad ones fail clearly."""

from __future__ import annotations

import struct
import time
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from hybridformer.data.images import ImageInputError, load_image, load_video


def _png_bytes(array: np.ndarray, mode: str) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature + IHDR for width x height RGB, and a tiny IDAT: what a bomb's header says."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_png_decodes_exactly_in_every_channel_mode(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    path = tmp_path / "img.png"
    path.write_bytes(_png_bytes(rgb, "RGB"))
    img = load_image(path)
    assert img.dtype == torch.uint8 and img.shape == (3, 5, 7)
    assert torch.equal(img, torch.from_numpy(rgb).permute(2, 0, 1))
    grey = load_image(path.read_bytes(), channels=1)
    expected = np.array(Image.fromarray(rgb).convert("L"))
    assert torch.equal(grey[0], torch.from_numpy(expected))
    assert load_image(path, channels=None).shape == (3, 5, 7)
    assert load_image(path, size=(10, 4)).shape == (3, 10, 4)


def test_text_file_named_png_is_not_an_image(tmp_path):
    fake = tmp_path / "notes.png"
    fake.write_text("these are my notes, not a picture\n")
    with pytest.raises(ImageInputError, match=r"notes\.png: not an image"):
        load_image(fake)


def test_truncated_png_names_the_file(tmp_path):
    data = _png_bytes(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8), "RGB")
    cut = tmp_path / "cut.png"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageInputError, match=r"cut\.png: truncated or corrupt"):
        load_image(cut)
    with pytest.raises(ImageInputError, match=r"upload\.png: truncated or corrupt"):
        load_image(data[: len(data) // 2], name="upload.png")


def test_decompression_bomb_header_is_refused_before_decoding(tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header_only(20000, 20000))  # 400 Mpixel RGB = 1.2 GB if decoded
    assert bomb.stat().st_size < 200
    start = time.perf_counter()
    with pytest.raises(ImageInputError, match=r"bomb\.png: .*(decompression bomb|over the limit)"):
        load_image(bomb)
    assert time.perf_counter() - start < 1.0
    # below Pillow's own limit, our max_pixels (from the header, nothing decoded) refuses it
    bomb.write_bytes(_png_header_only(6000, 6000))
    with pytest.raises(ImageInputError, match=r"6000x6000 = 36,000,000 pixels is over the limit of 25,000,000"):
        load_image(bomb)
    small = tmp_path / "small.png"
    small.write_bytes(_png_bytes(np.zeros((100, 100), np.uint8), "L"))
    with pytest.raises(ImageInputError, match=r"small\.png: 100x100 = 10,000 pixels .*\(max_pixels\)"):
        load_image(small, max_pixels=5000)


def test_wrong_channel_counts(tmp_path):
    rgba = tmp_path / "rgba.png"
    rgba.write_bytes(_png_bytes(np.zeros((4, 4, 4), np.uint8), "RGBA"))
    with pytest.raises(ImageInputError, match=r"rgba\.png: has 4 channels \(mode RGBA\)"):
        load_image(rgba, channels=None)
    assert load_image(rgba, channels=3).shape == (3, 4, 4)
    with pytest.raises(ImageInputError, match="channels: must be 1"):
        load_image(rgba, channels=2)
    with pytest.raises(ImageInputError, match=r"absent\.png: image file not found"):
        load_image(tmp_path / "absent.png")


def test_video_from_npy_and_frame_folder(tmp_path):
    frames = np.random.default_rng(2).integers(0, 256, (6, 8, 10), dtype=np.uint8)
    np.save(tmp_path / "clip.npy", frames)
    clip = load_video(tmp_path / "clip.npy")
    assert clip.shape == (1, 6, 8, 10) and torch.equal(clip[0], torch.from_numpy(frames))
    assert load_video(tmp_path / "clip.npy", channels=3, max_frames=4).shape == (3, 4, 8, 10)
    assert load_video(tmp_path / "clip.npy", size=16).shape == (1, 6, 16, 16)
    folder = tmp_path / "frames"
    folder.mkdir()
    for t in range(6):
        Image.fromarray(frames[t], mode="L").save(folder / f"{t:03d}.png")
    assert torch.equal(load_video(folder), clip)


def test_bad_videos_name_the_file(tmp_path):
    np.save(tmp_path / "short.npy", np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(ImageInputError, match=r"short\.npy: has 2 frames, fewer than min_frames=8"):
        load_video(tmp_path / "short.npy", min_frames=8)
    np.save(tmp_path / "two.npy", np.zeros((4, 8, 8, 2), np.uint8))
    with pytest.raises(ImageInputError, match=r"two\.npy: expected a \(T, H, W\) or \(T, H, W, C\) array with C = 1 or 3"):
        load_video(tmp_path / "two.npy")
    np.save(tmp_path / "float.npy", np.zeros((4, 8, 8), np.float32))
    with pytest.raises(ImageInputError, match=r"float\.npy: expected uint8"):
        load_video(tmp_path / "float.npy")
    (tmp_path / "junk.npy").write_text("not numpy")
    with pytest.raises(ImageInputError, match=r"junk\.npy: not a readable \.npy"):
        load_video(tmp_path / "junk.npy")
    folder = tmp_path / "mixed"
    folder.mkdir()
    Image.new("L", (8, 8)).save(folder / "0.png")
    Image.new("L", (9, 8)).save(folder / "1.png")
    with pytest.raises(ImageInputError, match=r"1\.png: frame of shape .* differs from the first frame"):
        load_video(folder)
    (folder / "1.png").write_text("oops")
    with pytest.raises(ImageInputError, match=r"1\.png: not an image"):
        load_video(folder)
    with pytest.raises(ImageInputError, match=r"clip\.txt: unsupported video input"):
        (tmp_path / "clip.txt").write_text("x")
        load_video(tmp_path / "clip.txt")


def test_mp4_through_pyav(tmp_path):
    av = pytest.importorskip("av", reason="PyAV (pip install av==18.1.0) reads .mp4 files")
    path = tmp_path / "clip.mp4"
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("mpeg4", rate=8)
        stream.width, stream.height, stream.pix_fmt = 32, 16, "yuv420p"
        for t in range(5):
            img = np.full((16, 32, 3), 40 * t, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    clip = load_video(path)
    assert clip.shape == (3, 5, 16, 32)
    means = clip.float().mean(dim=(0, 2, 3))
    assert torch.allclose(means, torch.arange(5) * 40.0, atol=6)  # lossy codec, brightness kept
    with pytest.raises(ImageInputError, match=r"clip\.mp4: has 5 frames, fewer than min_frames=16"):
        load_video(path, min_frames=16)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(ImageInputError, match=r"bad\.mp4: not a readable video"):
        load_video(bad)
