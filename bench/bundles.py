"""What a reproducibility bundle costs in CPU (docs/bundles.md): writing one,
reading and checking one (every image's SHA-256), and judging an image (its
pixel hash, and the mean absolute pixel difference when the hash differs).

    .venv/bin/python bench/bundles.py                         # 8 images of 1024x1024, 5 rounds
    .venv/bin/python bench/bundles.py --images 16 --size 512 --json var/bench/bundles.json

In-process, on app.core.bundles alone (no database, no server): the images are
noise PNGs (the worst case for size), as a model server's PNGs are stored.
"""

import argparse
import io
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--size", type=int, default=1024, help="image width and height")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", help="also write the results to this file")
    return parser.parse_args()


def noise_png(size, seed):
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def timed(function, rounds):
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        function()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), min(times)


def main():
    args = parse_args()
    import hashlib

    from app.core import bundles

    images = {f"images/p{i}-0.png": noise_png(args.size, i) for i in range(args.images)}
    outputs = [
        {"index": 0, "file": name, "sha256": hashlib.sha256(data).hexdigest(), "pixel_sha256": bundles.pixel_hash(data)}
        for name, data in images.items()
    ]
    manifest = {
        "format": bundles.FORMAT,
        "versions": [{"id": "v", "model": "local/tiny-sd"}],
        "comparisons": [],
        "predictions": [{"id": f"p{i}", "version": "v", "input": {}, "outputs": [o]} for i, o in enumerate(outputs)],
    }
    data = bundles.write(manifest, images)
    first, second = list(images.values())[:2]
    rows = {
        "write bundle": timed(lambda: bundles.write(manifest, images), args.rounds),
        "read and check bundle": timed(lambda: bundles.read(data, len(data) + 1), args.rounds),
        "pixel hash, one image": timed(lambda: bundles.pixel_hash(first), args.rounds),
        "mean pixel difference, two images": timed(lambda: bundles.distance(first, second), args.rounds),
    }
    print(
        f"{args.images} noise PNGs of {args.size}x{args.size}, bundle {len(data) / 2**20:.1f} MB, {args.rounds} rounds"
    )
    print(f"{'step':38} {'median ms':>10} {'min ms':>10}")
    for name, (median, best) in rows.items():
        print(f"{name:38} {median:10.1f} {best:10.1f}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"bundle_mb": len(data) / 2**20, **{k: v[0] for k, v in rows.items()}}))


if __name__ == "__main__":
    main()
