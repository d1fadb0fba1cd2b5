"""`manage.py serve_trainer NAME`: the trainer `make run` starts for a local
model, in Cog's training mode on its own port; LIGHTBOX_LOCAL_TRAINERS adds
more to the Procfile."""

import io
import os
import subprocess
import sys
import time

import httpx
from cogserver import ROOT, free_port
from django.core.management import call_command

from app.services import catalog


def test_make_run_lists_the_trainers_asked_for_beyond_the_procfiles(settings):
    settings.LOCAL_TRAINERS = ["tiny-sd", "sd-1.5"]
    out = io.StringIO()

    call_command("local_procfile", stdout=out)

    assert out.getvalue().splitlines() == ["sd-1.5-trainer: python manage.py serve_trainer sd-1.5"]
    assert "tiny-sd-trainer: python manage.py serve_trainer tiny-sd" in (ROOT / "Procfile").read_text()


def test_serve_trainer_runs_the_tiny_models_trainer_on_its_port(tmp_path, tiny_models):
    (tmp_path / "var" / "models").mkdir(parents=True)
    (tmp_path / "var" / "models" / "tiny-sd").symlink_to(tiny_models["sd"])
    base = free_port() - 205  # the trainer listens on base + 200 + tiny-sd's offset (1)
    env = {
        **os.environ,
        "LIGHTBOX_COG_BASE_PORT": str(base),
        "LIGHTBOX_TORCH_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(ROOT),
    }
    log = open(tmp_path / "trainer.log", "w")
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "serve_trainer", "tiny-sd"],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{base + 201}"
    try:
        state = {}
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and state.get("status") != "READY" and process.poll() is None:
            time.sleep(0.5)
            try:
                state = httpx.get(f"{url}/health-check", timeout=2).json()
            except httpx.HTTPError:
                pass
        assert state.get("status") == "READY", (tmp_path / "trainer.log").read_text()[-3000:]
        schema = httpx.get(f"{url}/openapi.json").json()
        assert "/trainings" in schema["paths"]
        assert schema["components"]["schemas"]["TrainingInput"]["required"] == ["input_images"]
    finally:
        process.terminate()
        process.wait(15)
        log.close()

    with_settings = catalog.local_trainer_port("tiny-sd")
    assert with_settings == 5301  # the default base port, as the README says
