"""A real folder end to end: Openclipart drawings (Debian openclipart-svg, rendered with cairosvg) laid
out as a user's Hugging Face imagefolder with their authors' titles as captions, then through the CLI:
``pretrain`` -> ``evaluate --task retrieval`` -> a real server on localhost answering a chat request
on one of the folder's images."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import pytest

from hybridformer.cli import main
from hybridformer.data.openclipart import OPENCLIPART_DIR, OpenclipartImages, clipart_index

try:
    import cairosvg  # noqa: F401
except (ImportError, OSError) as err:  # OSError: no libcairo on the machine
    pytest.skip(f"cairosvg cannot run ({err}): pip install cairosvg==2.9.1", allow_module_level=True)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not OPENCLIPART_DIR.is_dir(),
                       reason="Openclipart is not installed: as root, apt-get install -y openclipart-svg (.ci/run does)"),
]
N_DRAWINGS = 32


@pytest.fixture(scope="module")
def clipart_folder(tmp_path_factory) -> Path:
    """``N_DRAWINGS`` drawings of several categories as images/<n>.png + metadata.jsonl (file_name, text = title)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("clipart")
    records = sorted(clipart_index(), key=lambda r: r.sha256)[: 3 * N_DRAWINGS]  # a fixed, category-mixed pick
    images = OpenclipartImages([r.path for r in records], size=32, cache_dir=root / "cache")
    rows = []
    for i, record in enumerate(records):
        try:
            pixels = images[i]
        except ValueError:
            continue  # cairosvg cannot draw this one (docs/data.md: about 1 in 40 at small sizes)
        name = f"images/{len(rows):03d}.png"
        (root / "images").mkdir(exist_ok=True)
        Image.fromarray(pixels.permute(1, 2, 0).numpy()).save(root / name)
        rows.append({"file_name": name, "text": record.title})
        if len(rows) == N_DRAWINGS:
            break
    (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_pretrain_evaluate_and_serve_a_real_imagefolder(clipart_folder, tmp_path, capsys):
    from hybridformer.serve import ServeConfig
    from hybridformer.serve.models import load_served_model
    from hybridformer.serve.server import ServerThread

    rows = [json.loads(line) for line in (clipart_folder / "metadata.jsonl").read_text().splitlines()]
    assert len(rows) == N_DRAWINGS and len({r["text"] for r in rows}) > N_DRAWINGS // 2  # real, mostly distinct titles
    run = tmp_path / "run"
    assert main(["pretrain", "--objectives", "itc,caption", "--model", "tiny", "--data.path", str(clipart_folder),
                 "--out-dir", str(run), "--train.max_steps", "2", "--train.batch_size", "8",
                 "--train.progress_bar", "false"]) == 0
    assert json.loads((run / "metrics.json").read_text())["steps"] == 2
    assert main(["evaluate", "--task", "retrieval", "--model", str(run / "model"), "--data.path", str(clipart_folder),
                 "--out", str(tmp_path / "retrieval.json")]) == 0
    metrics = json.loads((tmp_path / "retrieval.json").read_text())["metrics"]
    assert 0 <= metrics["r1"] <= metrics["r5"] <= 1
    served = load_served_model(str(run / "model"), ServeConfig())
    image = base64.b64encode((clipart_folder / rows[0]["file_name"]).read_bytes()).decode()
    body = {"model": served.name, "max_tokens": 6, "temperature": 0, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "describe this drawing"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{image}"}}]}]}
    with ServerThread([served], ServeConfig(port=0)).start() as server:
        response = httpx.post(server.url + "/v1/chat/completions", json=body, timeout=120)
    assert response.status_code == 200, response.text
    reply = response.json()
    assert reply["choices"][0]["message"]["role"] == "assistant"
    assert isinstance(reply["choices"][0]["message"]["content"], str) and reply["usage"]["completion_tokens"] >= 1
