"""What the compare viewer's heatmap and the PNG readers cost (issue 16, parts 3
and 4): app.core.images.difference on two images of each size (the second of
a pair of different sizes is scaled first), and app.core.pngmeta.read_png on
an A1111 PNG, a Lightbox PNG, and hostile files (a zlib bomb in an iTXt, a
file of thousands of chunks).

    .venv/bin/python bench/compare_images.py               # 20 runs per case
    .venv/bin/python bench/compare_images.py --runs 5 --json var/bench/compare.json

In-process, core code only: no database, no web server. The images are noise
(the worst case for PNG compression of the heatmap) and the median is printed.
The first heatmap of a pair is made once and then served from the cache
(app/views/compare.py), so this is the cost of a first view.
"""

import argparse
import io
import json
import statistics
import struct
import sys
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="runs per case")
    parser.add_argument("--json", help="also write the results to this file")
    return parser.parse_args()


def noise(width, height, seed):
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, "PNG")
    return buffer.getvalue()


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def median_ms(function, runs):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        function()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main():
    args = parse_args()
    from app.core import images, pngmeta

    results = {}
    for a_size, b_size in (((512, 512), (512, 512)), ((1024, 1024), (1024, 1024)), ((1024, 1024), (512, 768))):
        a, b = noise(*a_size, 1), noise(*b_size, 2)
        name = f"difference {a_size[0]}x{a_size[1]} vs {b_size[0]}x{b_size[1]}"
        results[name] = median_ms(lambda a=a, b=b: images.difference(a, b), args.runs)

    small = noise(8, 8, 3)
    after_ihdr = 8 + 8 + 13 + 4
    a1111 = (
        small[:after_ihdr]
        + chunk(b"tEXt", b"parameters\x00a fox\nSteps: 20, Sampler: Euler a, Seed: 1")
        + small[after_ihdr:]
    )
    lightbox = images.embed_png_metadata(
        small,
        {"lightbox": json.dumps({"version": "v", "input": {"prompt": "a fox", "image": "data:," + "A" * 4_000_000}})},
    )
    bomb = zlib.compressobj(9)
    compressed = b"".join(bomb.compress(b"\x00" * (1 << 24)) for _ in range(64)) + bomb.flush()
    bombed = small[:after_ihdr] + chunk(b"iTXt", b"parameters\x00\x01\x00\x00\x00" + compressed) + small[after_ihdr:]
    many = small[:after_ihdr] + chunk(b"tEXt", b"k\x00v") * 100_000 + small[after_ihdr:]

    def read(data):
        try:
            pngmeta.read_png(data)
        except pngmeta.NotReadable:
            pass

    for name, data in (
        ("read_png A1111 parameters", a1111),
        ("read_png Lightbox chunk with a 4 MB input", lightbox),
        ("read_png iTXt bomb (1 GiB inflated, 1 MB file)", bombed),
        ("read_png 100,000 chunks (stops at 4,096)", many),
    ):
        results[name] = median_ms(lambda data=data: read(data), args.runs)

    width = max(len(name) for name in results)
    print(f"{'case':<{width}}  median ms ({args.runs} runs)")
    for name, value in results.items():
        print(f"{name:<{width}}  {value:10.1f}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"runs": args.runs, "median_ms": results}, indent=2))


if __name__ == "__main__":
    main()
