"""Openclipart drawings with real, noisy captions (Debian ``openclipart-svg``, rendered with ``cairosvg``).

**What is real.** About 8,100 public-domain SVG drawings under ``/usr/share/openclipart/svg/<category>/``
(``apt-get install -y openclipart-svg`` as root; 173 MB), each with the title and keywords its
author gave it (``<dc:title>``, ``<dc:subject>`` in the RDF metadata). Captions join them with the
category path — *real* text written by people, and noisy: Italian titles ("Farfalla semplice"),
author names among the keywords (dropped when equal to the creator), file-ish titles
("church building 01"). Label = the top-level category (22 classes, e.g. ``animals``, ``food``).

**Rendering** is lazy and cached: a drawing is rendered (``cairosvg``, no external resources fetched) to a
``size``² RGB PNG on white, aspect kept and padded, the first time it is read, and cached under
``data_dir()/openclipart/png<size>/``. A drawing cairosvg cannot render raises a ``ValueError``
naming the SVG (and is remembered in a ``.failed`` file); so does one that renders fully transparent
(cairosvg lacks some SVG features, e.g. Tux). :func:`openclipart_splits` renders its
chosen drawings up front by default and drops those (about 1 in 200), so a training run never
meets one; ``prerender=False`` defers every render to first access.

**Selection and splits.** The metadata index (title, keywords, category, SHA-256 of each file) is
built once and cached as JSON. Drawings without a title, and the 15 whose DTD declares entities
(cairosvg's defusedxml parser refuses them), are skipped: 8,044 of 8,121 remain; ``max_drawings`` picks a fixed,
category-stratified subset by hash order (:func:`take_subset`), which is split 80/10/10 by
:func:`split_dataset` on the file hashes (identical files never straddle splits).
"""

from __future__ import annotations

import hashlib
import io
import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..io import atomic_write, write_json, write_text
from .dataset import TextDataset
from .image_sources import debian_path
from .image_text import ImageTextDataset, Splits, split_indices
from .sources import MissingDataError, data_dir
from .splits import take_subset

__all__ = ["OPENCLIPART_DIR", "ClipartRecord", "clipart_index", "OpenclipartImages", "openclipart_splits"]

OPENCLIPART_DIR = Path("/usr/share/openclipart/svg")
"""Where Debian's ``openclipart-svg`` installs the drawings."""
_NS = {"dc": "http://purl.org/dc/elements/1.1/", "cc": "http://web.resource.org/cc/",
       "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#"}  # fmt: skip
_INDEX_VERSION = 1
_MAX_KEYWORDS = 8


@dataclass(frozen=True)
class ClipartRecord:
    """Metadata of one drawing."""

    path: str
    """Path relative to the Openclipart root, e.g. ``animals/birds/owl_on_branch_ganson.svg``."""
    title: str
    """``<dc:title>`` of the work."""
    keywords: tuple[str, ...]
    """``<dc:subject>`` keywords, minus empty ones, ``unsorted`` and the creator's name."""
    sha256: str
    """Hash of the file's bytes."""

    @property
    def category(self) -> str:
        """Top-level folder: the label."""
        return self.path.split("/")[0]

    def caption(self) -> str:
        """``"<title>; <keyword>, <keyword>, ...; <category path>"`` (real, noisy text)."""
        folders = " / ".join(self.path.split("/")[:-1]).replace("_", " ")
        parts = [self.title] + ([", ".join(self.keywords[:_MAX_KEYWORDS])] if self.keywords else []) + [folders]
        return "; ".join(parts)


def _read_metadata(path: Path) -> tuple[str, list[str]] | None:
    """(title, keywords) from the cc:Work element, parsing no further than it; None if untitled/unparsable."""
    try:
        for _, element in ET.iterparse(path, events=("end",)):
            if element.tag == "{http://web.resource.org/cc/}Work":
                title = (element.findtext("dc:title", default="", namespaces=_NS) or "").strip()
                creator = (element.findtext("dc:creator/cc:Agent/dc:title", default="", namespaces=_NS) or "").strip()
                words = [(li.text or "").strip() for li in element.findall("dc:subject/rdf:Bag/rdf:li", _NS)]
                skip = {"", "unsorted", creator.lower()}
                keywords = list(dict.fromkeys(w for w in words if w.lower() not in skip))
                return (title, keywords) if title else None
            if element.tag.endswith("}metadata"):
                return None
    except ET.ParseError:
        return None
    return None


def clipart_index(root: Path = OPENCLIPART_DIR, cache_dir: Path | None = None) -> list[ClipartRecord]:
    """Every titled drawing under ``root`` in sorted path order (built once, cached as JSON)."""
    root = debian_path(root, "openclipart-svg", "the Openclipart drawings")
    cache = (cache_dir or data_dir() / "openclipart") / "index.json"
    if cache.is_file():
        body = json.loads(cache.read_text())
        if body.get("version") == _INDEX_VERSION and body.get("root") == str(root):
            return [ClipartRecord(r["path"], r["title"], tuple(r["keywords"]), r["sha256"]) for r in body["records"]]
    records = []
    for path in sorted(root.rglob("*.svg")):
        data = path.read_bytes()
        meta = _read_metadata(path)
        # cairosvg parses with defusedxml, which refuses DTD entities (6 Illustrator exports declare them)
        if meta is not None and b"<!ENTITY" not in data:
            digest = hashlib.sha256(data).hexdigest()
            records.append(ClipartRecord(path.relative_to(root).as_posix(), meta[0], tuple(meta[1]), digest))
    rows = [{"path": r.path, "title": r.title, "keywords": list(r.keywords), "sha256": r.sha256} for r in records]
    write_json(cache, {"version": _INDEX_VERSION, "root": str(root), "records": rows})
    return records


def _cairosvg():
    """The cairosvg module, or MissingDataError saying what to install (never cached as a failed render)."""
    try:
        import cairosvg
    except (ImportError, OSError) as err:  # OSError: cairocffi found no libcairo
        raise MissingDataError(
            f"rendering Openclipart needs cairosvg (pip install cairosvg==2.9.1) and the cairo library "
            f"(apt-get install -y libcairo2): {err}"
        ) from None
    return cairosvg


def _render(svg: Path, size: int) -> np.ndarray:
    """SVG -> (size, size, 3) uint8 on white, aspect kept, centred."""
    from PIL import Image

    cairosvg = _cairosvg()

    png = cairosvg.svg2png(url=str(svg), output_width=size)
    img = Image.open(io.BytesIO(png))
    if img.height > size:  # taller than wide: fit the height instead
        img = Image.open(io.BytesIO(cairosvg.svg2png(url=str(svg), output_height=size)))
    img = img.convert("RGBA")
    if img.getextrema()[3][1] == 0:  # nothing opaque: cairosvg drew nothing (unsupported features)
        raise ValueError("cairosvg rendered an empty (fully transparent) image")
    canvas = Image.new("RGBA", (size, size), (255, 255, 255, 255))
    canvas.alpha_composite(img, ((size - img.width) // 2, (size - img.height) // 2))
    return np.array(canvas.convert("RGB"), dtype=np.uint8)


class OpenclipartImages:
    """Lazily rendered, disk-cached drawings: ``images[i]`` is uint8 (3, size, size)."""

    def __init__(self, paths: list[str], size: int = 64, root: Path = OPENCLIPART_DIR, cache_dir: Path | None = None):
        if size < 8:
            raise ValueError(f"size: must be >= 8 pixels, got {size}")
        self.paths, self.size, self.root = paths, size, root
        self.cache_dir = (cache_dir or data_dir() / "openclipart") / f"png{size}"

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Tensor:
        from PIL import Image

        rel = self.paths[index]
        png = self.cache_dir / (rel[: -len(".svg")] + ".png")
        failed = png.with_suffix(".failed")
        if failed.is_file():
            raise ValueError(f"{self.root / rel}: cairosvg could not render this drawing ({failed.read_text()})")
        if not png.is_file():
            _cairosvg()  # a missing renderer is the user's setup, not this drawing's fault
            try:
                array = _render(self.root / rel, self.size)
            except Exception as err:  # noqa: BLE001 - cairosvg raises many kinds; all mean "unrenderable"
                write_text(failed, f"{type(err).__name__}: {err}")
                raise ValueError(f"{self.root / rel}: cairosvg could not render this drawing ({err})") from None
            # atomic: parallel data workers never read half a PNG
            atomic_write(png, lambda tmp: Image.fromarray(array).save(tmp, format="PNG"))
        else:
            array = np.array(Image.open(png).convert("RGB"), dtype=np.uint8)
        return torch.from_numpy(array).permute(2, 0, 1).contiguous()  # (H, W, 3) -> (3, H, W)

    def prerender(self) -> list[int]:
        """Render (or find cached) every drawing; return the positions of those that failed."""
        failed = []
        for i in range(len(self)):
            try:
                self[i]
            except ValueError:
                failed.append(i)
        return failed


def openclipart_splits(
    max_drawings: int = 2000,
    size: int = 64,
    seed: int = 0,
    *,
    prerender: bool = True,
    root: Path = OPENCLIPART_DIR,
    cache_dir: Path | None = None,
) -> Splits[ImageTextDataset]:
    """Openclipart image-caption pairs, at most ``max_drawings`` (category-stratified), split 80/10/10.

    Args:
        max_drawings: cap on the drawings used (all 8,044 if larger).
        size: side of the rendered square images.
        seed: fixes the subset and the splits.
        prerender: render the chosen drawings now (~20 ms each the first time, then read from the
            cache) and drop the ~0.5% cairosvg cannot render, so training never meets one; False
            renders on first access, where such a drawing raises a ValueError naming its SVG.

    Raises:
        MissingDataError: ``openclipart-svg`` is not installed (the message has the apt command).
        ValueError: ``max_drawings`` < 10.
    """
    if max_drawings < 10:
        raise ValueError(f"max_drawings: must be >= 10 (enough for three splits), got {max_drawings}")
    records = clipart_index(root, cache_dir)
    categories = sorted({r.category for r in records})
    labels = [categories.index(r.category) for r in records]
    proxy = TextDataset(texts=[r.path for r in records], labels=labels, label_names=categories,
                        ids=[str(i) for i in range(len(records))])  # fmt: skip
    chosen = [records[int(i)] for i in take_subset(proxy, max_drawings, seed).ids]  # type: ignore[union-attr]
    if prerender:
        failed = set(OpenclipartImages([r.path for r in chosen], size, root, cache_dir).prerender())
        chosen = [r for i, r in enumerate(chosen) if i not in failed]
    full = ImageTextDataset(
        images=OpenclipartImages([r.path for r in chosen], size, root, cache_dir),
        captions=[r.caption() for r in chosen], labels=[categories.index(r.category) for r in chosen],
        label_names=categories, ids=[f"openclipart/{r.path}" for r in chosen], name="openclipart",
    )
    parts = split_indices([r.sha256 for r in chosen], full.labels, (0.8, 0.1, 0.1), seed)
    return Splits(*(full.subset(parts[s]) for s in ("train", "validation", "test")))
