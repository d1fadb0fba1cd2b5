"""Seconds per LoRA training step on a CPU, with the tiny random-weight models.

    python bench/train_steps.py [--steps 20] [--threads 1] [--json out.jsonl]

For each row (model, resolution, batch size, rank) the trainer of
inference/train.py runs --steps steps in this process, on four generated
images, after a warm-up training of two steps; the figure is the time of the
steps loop divided by the steps (the trainer's own `seconds_per_step`), so
loading the model, reading the archive and saving the weights are left out.
The intra-op thread count is fixed (--threads, as LIGHTBOX_TORCH_THREADS).
"""

import argparse
import io
import json
import os
import sys
import tempfile
import time
import zipfile
from contextlib import redirect_stdout
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# (model, family, resolution, batch size, rank)
ROWS = [
    ("tiny-sd", "sd15", 64, 1, 4),
    ("tiny-sd", "sd15", 64, 4, 32),
    ("tiny-sd", "sd15", 256, 4, 32),
    ("tiny-sdxl", "sdxl", 64, 4, 32),
    ("tiny-sdxl", "sdxl", 256, 4, 32),
]


def images_zip(path: Path, count: int = 4) -> Path:
    import numpy as np
    from PIL import Image

    with zipfile.ZipFile(path, "w") as archive:
        for i in range(count):
            pixels = np.random.default_rng(i).integers(0, 256, (320, 320, 3), dtype=np.uint8)
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, format="PNG")
            archive.writestr(f"{i}.png", buffer.getvalue())
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (LIGHTBOX_TORCH_THREADS)")
    parser.add_argument("--json", help="append each row's figures to this file as JSON lines")
    args = parser.parse_args(argv)
    os.environ["LIGHTBOX_TORCH_THREADS"] = str(args.threads)
    os.environ.setdefault("LIGHTBOX_DEVICE", "cpu")

    import torch

    from inference import families, tiny
    from inference.train import Trainer, load

    work = Path(tempfile.mkdtemp(prefix="lightbox-bench-train-"))
    tiny.write_all(work)
    archive = images_zip(work / "images.zip")
    print(f"torch {torch.__version__}, {args.threads} thread(s), {os.cpu_count()} CPUs, {args.steps} steps per row")
    print(f"{'model':10s} {'res':>5s} {'batch':>5s} {'rank':>4s} {'s/step':>8s} {'steps/s':>8s}")
    for model, family, resolution, batch, rank in ROWS:
        trainer = Trainer(*load(str(work / model), families.get(family)))
        common = dict(
            archive=archive,
            token_string="zxq",
            caption_prefix="",
            learning_rate=1e-4,
            rank=rank,
            resolution=resolution,
            batch_size=batch,
            seed=0,
            out_dir=str(work / "out"),
        )
        with redirect_stdout(io.StringIO()):
            trainer.run(steps=2, **common)  # warm-up: first calls allocate
            started = time.perf_counter()
            trainer.run(steps=args.steps, **common)
            total = time.perf_counter() - started
        per_step = trainer.seconds_per_step
        row = dict(
            model=model,
            resolution=resolution,
            batch=batch,
            rank=rank,
            steps=args.steps,
            threads=args.threads,
            seconds_per_step=per_step,
            whole_training_s=total,
        )
        print(f"{model:10s} {resolution:5d} {batch:5d} {rank:4d} {per_step:8.4f} {1 / per_step:8.1f}", flush=True)
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
