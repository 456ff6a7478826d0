"""WebDataset streaming: images/s read and decoded by 1 vs 2 DataLoader workers (SPEC §9, issue 26).

Writes ``shards`` tar shards of ``per_shard`` JPEG images (``side``² photos-like noise, quality 90)
with captions in the OpenCLIP / img2dataset layout, then times full passes of
:class:`hybridformer.data.webdataset_pairs.WebDatasetPairs` (tar reading by ``webdataset``, JPEG
decoding and resizing to 64² by ``load_image``) through a ``DataLoader`` of batch 32 with 1 and 2
workers, alternating per round (median over rounds, so the ratio is measured side by side). Each
pass includes starting the workers. Target: 2 workers >= 1.5x the images/s of 1 worker.

    python benchmarks/webdataset_stream.py --quick --out results/webdataset_quick.json
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import print_table, write_results  # noqa: E402

from hybridformer.data.bad_files import BadFiles  # noqa: E402
from hybridformer.data.webdataset_pairs import WebDatasetPairs  # noqa: E402


def write_shards(root: Path, shards: int, per_shard: int, side: int) -> str:
    """``root/{000000..}.tar`` of ``<key>.jpg`` + ``<key>.txt``; returns the brace pattern."""
    from PIL import Image

    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (side // 8, side // 8, 3), dtype=np.uint8)
    for s in range(shards):
        with tarfile.open(root / f"{s:06d}.tar", "w") as tar:
            for i in range(per_shard):
                # smooth blocks + noise: decodes like a photo, not like flat colour
                img = np.kron(np.roll(base, i + s, axis=0), np.ones((8, 8, 1), np.uint8))
                img = np.clip(img.astype(np.int16) + rng.integers(-20, 21, img.shape), 0, 255).astype(np.uint8)
                buf = io.BytesIO()
                Image.fromarray(img).save(buf, format="JPEG", quality=90)
                for ext, data in (("jpg", buf.getvalue()), ("txt", f"image {i} of shard {s}".encode())):
                    info = tarfile.TarInfo(f"{s:03d}{i:05d}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    return str(root / f"{{000000..{shards - 1:06d}}}.tar")


def _collate(examples):
    return torch.stack([e.image for e in examples]), [e.caption for e in examples]


def one_pass(pattern: str, workers: int) -> tuple[float, int]:
    """(seconds, images) of one full pass with ``workers`` DataLoader workers."""
    dataset = WebDatasetPairs(pattern, BadFiles("error"), size=64)
    start = time.perf_counter()
    images = 0
    for batch, _ in DataLoader(dataset, batch_size=32, num_workers=workers, collate_fn=_collate):
        images += batch.shape[0]
    return time.perf_counter() - start, images


def _cpu_flags() -> list[str]:
    try:
        flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split(":", 1)[1].split()
    except (OSError, StopIteration):
        return []
    return sorted(f for f in flags if f.startswith("avx512") or "vnni" in f or f in ("avx2", "amx_int8"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="8 shards x 192 images of 256², 5 rounds (about a minute)")
    parser.add_argument("--out", default="results/webdataset.json")
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args()
    shards, per_shard, side, rounds = (8, 192, 256, 5) if args.quick else (16, 256, 384, 7)
    rounds = args.rounds or rounds
    with tempfile.TemporaryDirectory() as tmp:
        pattern = write_shards(Path(tmp), shards, per_shard, side)
        one_pass(pattern, 1)  # warm the page cache and the imports
        times: dict[int, list[float]] = {1: [], 2: []}
        for _ in range(rounds):
            for workers in (1, 2):
                seconds, images = one_pass(pattern, workers)
                assert images == shards * per_shard, images
                times[workers].append(seconds)
    case = f"{shards}x{per_shard} jpg {side}px -> 64px"
    rows = []
    for workers in (1, 2):
        median = statistics.median(times[workers])
        rows.append({"case": case, "variant": f"workers={workers}", "median_ms": round(1000 * median, 1),
                     "throughput": round(shards * per_shard / median, 1), "unit": "images/s",
                     "quartiles_ms": [round(1000 * q, 1) for q in statistics.quantiles(times[workers], n=4)]})
    paired = [a / b for a, b in zip(times[1], times[2])]
    speedup = statistics.median(paired)
    rows[1]["speedup_vs_1_worker"] = round(speedup, 3)
    print_table(rows)
    print(f"2 workers / 1 worker: {speedup:.2f}x images/s (median of {rounds} paired rounds; target >= 1.5x)")
    write_results(args.out, rows, cpu_flags=_cpu_flags(), target="2 workers >= 1.5x the images/s of 1 worker",
                  met=speedup >= 1.5, rounds=rounds)


if __name__ == "__main__":
    main()
