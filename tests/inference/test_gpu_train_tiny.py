"""bench/gpu_train.py's code path (issue 13's GPU figures), on a CPU with tiny models."""

import json
import os
import subprocess
import sys

from cogserver import ROOT


def test_the_gpu_training_benchmark_runs_every_row_with_tiny_models(tmp_path):
    out = tmp_path / "rows.jsonl"
    done = subprocess.run(
        [sys.executable, "bench/gpu_train.py", "--tiny", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "LIGHTBOX_TORCH_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {row["row"]: row for row in map(json.loads, out.read_text().splitlines())}

    assert sorted(rows) == ["sd-turbo-1", "sd-turbo-4", "train-sdxl-diffusers-example", "train-sdxl-ours"]
    assert rows["train-sdxl-ours"]["seconds_per_step"] > 0
    assert rows["train-sdxl-diffusers-example"]["seconds_per_step"] > 0
    assert rows["sd-turbo-1"]["png_level"] == 0 and rows["sd-turbo-1"]["b_over_a"] > 0
    assert rows["sd-turbo-4"]["png_level"] == 1
    assert "SD-Turbo 1 step, stored PNG: b/a" in done.stdout
