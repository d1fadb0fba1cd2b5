"""The GPU benchmark's code path, on a CPU with tiny models."""

import json
import os
import subprocess
import sys

from cogserver import ROOT


def test_the_gpu_benchmark_runs_every_row_with_tiny_models(tmp_path):
    out = tmp_path / "rows.jsonl"
    subprocess.run(
        [sys.executable, "bench/gpu_predictor.py", "--tiny", "--runs", "1", "--json", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=240,
        env={**os.environ, "LIGHTBOX_TORCH_THREADS": "1"},
    )
    rows = [json.loads(line) for line in out.read_text().splitlines()]

    assert [r["row"] for r in rows] == ["sd-turbo-1", "sd-turbo-4", "sdxl-turbo-1", "sd15-25", "sdxl-30"]
    assert all(r["a_ms"] > 0 and r["b_ms"] > 0 for r in rows)
