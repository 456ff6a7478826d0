"""``hybridformer generate``: text from an image (and clip) and a prompt; bad input exits 2 with one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hybridformer.cli import main
from hybridformer.commands.generate import TINY_NOTICE
from hybridformer.data.multimodal_collate import PixelSpec, stack_pixels
from hybridformer.data.tokenizer import minilm_tokenizer
from hybridformer.models import multimodal_tiny
from hybridformer.registry import save_model


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(folder / "image.png")
    np.save(folder / "clip.npy", rng.integers(0, 256, (10, 32, 32), dtype=np.uint8))
    np.save(folder / "short.npy", rng.integers(0, 256, (3, 32, 32), dtype=np.uint8))
    (folder / "bad.png").write_bytes(b"this is not an image")
    png = (folder / "image.png").read_bytes()
    (folder / "truncated.png").write_bytes(png[: len(png) // 2])
    return {p.stem: p for p in folder.iterdir()}


def test_tiny_prints_a_notice_and_the_text(files, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["generate", "--model", "tiny", "--image", str(files["image"]), "--video", str(files["clip"]),
            "--prompt", "a photo of", "--max-new-tokens", "5"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert err.strip() == TINY_NOTICE
    assert len(out.strip().splitlines()) == 1 and out.strip()


def test_a_saved_model_generates_what_it_generates_in_python(files, tmp_path, capsys) -> None:
    torch.manual_seed(1)
    model = multimodal_tiny(video=False).eval()
    for block in model.decoder.blocks:
        torch.nn.init.constant_(block.cross_attention.gate, 1.0)
    save_model(model, tmp_path / "m", tokenizer=minilm_tokenizer())
    code = main(["generate", "--model", str(tmp_path / "m"), "--image", str(files["image"]), "--prompt", "the",
                 "--strategy", "beam", "--num-beams", "2", "--max-new-tokens", "4"])
    out, err = capsys.readouterr()
    assert code == 0 and err == ""
    rgb = torch.from_numpy(np.array(Image.open(files["image"]).convert("RGB"))).permute(2, 0, 1)  # (3, H, W)
    pixels = stack_pixels([rgb], PixelSpec(image_size=32, channels=3))  # as the training collators do
    tokenizer = minilm_tokenizer()
    prompt = torch.tensor([[101, *tokenizer("the", add_special_tokens=False)["input_ids"]]])
    expected = model.generate(prompt, images=pixels, strategy="beam", num_beams=2, max_new_tokens=4)
    tokens = expected.sequences[0, : int(expected.lengths[0])].tolist()
    assert out.strip() == tokenizer.decode(tokens, skip_special_tokens=True)


@pytest.mark.parametrize(
    ("name", "extra", "needle"),
    [
        ("bad", [], "bad.png: not an image"),
        ("truncated", [], "truncated.png: truncated"),
        ("missing", [], "missing.png: image file not found"),
        ("image", ["--video", "short.npy"], "fewer than min_frames=8"),
        ("image", ["--prompt", "word " * 1100], "--prompt: 1101 tokens is too long"),
        ("image", ["--top-p", "2"], "--top-p: must be in (0, 1]"),
        ("image", ["--model", "nowhere"], "--model: nowhere is neither 'tiny' nor a model folder"),
    ],
)
def test_bad_input_exits_2_with_one_line(files, name, extra, needle, capsys) -> None:
    folder = files["image"].parent
    extra = [str(folder / e) if e.endswith(".npy") else e for e in extra]
    argv = ["generate", "--model", "tiny", "--image", str(folder / f"{name}.png"), "--prompt", "x", *extra]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and needle in err, err
