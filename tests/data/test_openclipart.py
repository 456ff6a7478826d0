"""Openclipart: metadata captions, lazy cached rendering, unrenderable drawings; a fake root and the real set."""

from __future__ import annotations

import pytest
import torch

from hybridformer.data import MissingDataError
from hybridformer.data.openclipart import OPENCLIPART_DIR, OpenclipartImages, clipart_index, openclipart_splits

try:
    import cairosvg  # noqa: F401
except (ImportError, OSError) as err:  # OSError: no libcairo on the machine
    pytest.skip(f"cairosvg cannot run ({err}): pip install cairosvg==2.9.1; apt-get install -y libcairo2",
                allow_module_level=True)  # fmt: skip

needs_openclipart = pytest.mark.skipif(
    not OPENCLIPART_DIR.is_dir(),
    reason="Openclipart is not installed: as root, apt-get install -y openclipart-svg (.ci/run does)",
)

_SVG = """<?xml version="1.0"?>
<svg xmlns="http://www.w3.org/2000/svg" xmlns:dc="http://purl.org/dc/elements/1.1/"
     xmlns:cc="http://web.resource.org/cc/" xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"
     width="{w}" height="{h}">
  <metadata><rdf:RDF><cc:Work rdf:about="">
    <dc:title>{title}</dc:title>
    <dc:subject><rdf:Bag><rdf:li>{kw}</rdf:li><rdf:li>Jane Doe</rdf:li><rdf:li>unsorted</rdf:li></rdf:Bag></dc:subject>
    <dc:creator><cc:Agent><dc:title>Jane Doe</dc:title></cc:Agent></dc:creator>
  </cc:Work></rdf:RDF></metadata>
  <rect x="0" y="0" width="{w}" height="{h}" fill="#ff0000"/>
</svg>
"""


def _fake_root(tmp_path):
    root = tmp_path / "svg"
    for cat in ("animals", "food"):
        for i in range(6):
            folder = root / cat / ("sub" if i % 2 else "")
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{cat}{i}.svg").write_text(_SVG.format(w=40, h=20, title=f"{cat} thing {i}", kw=f"kw{i}"))
    (root / "food" / "untitled.svg").write_text(_SVG.format(w=10, h=10, title="", kw="x"))
    (root / "food" / "broken.svg").write_text(_SVG.format(w="", h="", title="broken one", kw="x"))  # no size
    return root


def test_captions_labels_and_rendering_on_a_fake_root(tmp_path):
    root, cache = _fake_root(tmp_path), tmp_path / "cache"
    records = clipart_index(root, cache)
    assert len(records) == 13  # the untitled drawing is skipped
    by_path = {r.path: r for r in records}
    owl = by_path["animals/sub/animals1.svg"]
    assert owl.keywords == ("kw1",)  # creator's name and "unsorted" dropped
    assert owl.caption() == "animals thing 1; kw1; animals / sub" and owl.category == "animals"

    lazy = openclipart_splits(max_drawings=13, size=16, root=root, cache_dir=cache, prerender=False)
    everything = [lazy[s] for s in ("train", "validation", "test")]
    assert sum(len(p) for p in everything) == 13 and lazy.test.label_names == ["animals", "food"]
    paths = [r.path for r in records]
    images = OpenclipartImages(paths, size=16, root=root, cache_dir=cache)
    broken = paths.index("food/broken.svg")
    with pytest.raises(ValueError, match=r"broken\.svg: cairosvg could not render this drawing"):
        images[broken]
    first = images[paths.index("animals/animals0.svg")]
    assert first.shape == (3, 16, 16) and first.dtype == torch.uint8
    # a 40x20 red rectangle on a 16x16 white square: red band of 8 rows in the middle, white above/below
    assert first[:, 4:12].tolist() == torch.tensor([255, 0, 0]).view(3, 1, 1).expand(3, 8, 16).tolist()
    assert (first[:, :4] == 255).all() and (first[:, 12:] == 255).all()
    assert (cache / "png16" / "animals" / "animals0.png").is_file()
    assert torch.equal(images[paths.index("animals/animals0.svg")], first)  # read back from the cache

    clean = openclipart_splits(max_drawings=13, size=16, root=root, cache_dir=cache)  # prerender drops it
    ids = [i for s in ("train", "validation", "test") for i in clean[s].ids]
    assert len(ids) == 12 and "openclipart/food/broken.svg" not in ids


def test_missing_openclipart_names_the_package(tmp_path):
    with pytest.raises(MissingDataError, match=r"apt-get install -y openclipart-svg"):
        openclipart_splits(root=tmp_path / "nowhere", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="max_drawings"):
        openclipart_splits(max_drawings=3, root=tmp_path, cache_dir=tmp_path)


@needs_openclipart
def test_real_openclipart_drawings(tmp_path_factory):
    cache = tmp_path_factory.mktemp("clipart")
    records = clipart_index(cache_dir=cache)
    assert len(records) > 8000
    owl = next(r for r in records if r.path == "animals/birds/owl_on_branch_ganson.svg")
    assert owl.caption() == "Owl on Branch; owl, animal, bird; animals / birds"
    splits = openclipart_splits(max_drawings=40, size=32, cache_dir=cache)
    kept = [splits[s][i] for s in ("train", "validation", "test") for i in range(len(splits[s]))]
    # dropped: unrenderable or blank at 32 px (thin line art, empty gradient swatches, Tux): 8 of these 40
    assert 30 <= len(kept) < 40
    for example in kept:
        assert example.image.shape == (3, 32, 32) and (example.image < 250).any()  # something was drawn
        assert example.label_name == example.image_id.split("/")[1]
