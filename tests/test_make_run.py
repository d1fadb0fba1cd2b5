"""The stack as README starts it (`make run`, embedded defaults), and the first
thing a user does is an API call: it runs a local model.

Before, `make run` loaded the catalog before its Cog servers answered, so the
local versions had no schema and the call was refused ("This version has no
input schema yet") until someone opened a page."""

import os
import signal
import socket
import subprocess
import time

import httpx
import pytest
import replicate

from tests.conftest import ROOT, free_port, wait_until

# The embedded defaults of a fresh checkout, whatever this test run uses.
NOT_INHERITED = (
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "REDIS_URL",
    "LIGHTBOX_REDIS_PREFIX",
    "MEDIA_ROOT",
    "DJANGO_SETTINGS_MODULE",
    "LIGHTBOX_DISPATCH_DEADLINE",
    "LIGHTBOX_LOCAL_MODELS",
    "SITE_URL",
    "PORT",
)


def _free_base_port():
    """A base port whose offsets are free: the tiny models' servers (+1, +2)
    and tiny-sd's trainer (+201), which `make run` starts."""
    from app.services.catalog import LOCAL_MODELS, TRAINER_PORT_OFFSET

    offsets = sorted(
        {offset for offset, *_ in LOCAL_MODELS.values()} | {TRAINER_PORT_OFFSET + LOCAL_MODELS["tiny-sd"][0]}
    )
    for _ in range(50):
        base = free_port()
        try:
            for offset in offsets:
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", base + offset))
        except OSError:
            continue
        return base
    raise AssertionError("no free ports for the model servers")


@pytest.fixture
def stack(tmp_path):
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key not in NOT_INHERITED and not key.startswith("MAKE")}
    env.update(LIGHTBOX_VAR_DIR=str(tmp_path / "var"), LIGHTBOX_COG_BASE_PORT=str(_free_base_port()))
    python = str(ROOT / ".venv" / "bin" / "python")

    def manage(*args, **extra):
        return subprocess.run(
            [python, "manage.py", *args], cwd=ROOT, env={**env, **extra}, check=True, capture_output=True, text=True
        ).stdout

    subprocess.run(["make", "-s", "migrate"], cwd=ROOT, env=env, check=True, capture_output=True)
    manage(
        "createsuperuser",
        "--noinput",
        "--username",
        "ada",
        "--email",
        "ada@example.com",
        DJANGO_SUPERUSER_PASSWORD="a long pass phrase",
    )
    token = manage("create_token", "ada").strip()
    log = open(tmp_path / "make-run.log", "wb")
    process = subprocess.Popen(
        ["make", "-s", "run", f"PORT={port}"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"

    def web_answers():
        assert process.poll() is None, (tmp_path / "make-run.log").read_text()[-3000:]
        try:
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(web_answers, timeout=300, interval=0.5, message="make run's web process")
        yield url, token
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def test_the_first_api_call_after_make_run_runs_a_local_model(stack):
    url, token = stack
    started = time.monotonic()

    output = replicate.Client(api_token=token, base_url=url).run(
        "local/tiny-sd", input={"prompt": "first light", "num_inference_steps": 1}
    )

    [image] = output
    image_url = image if isinstance(image, str) else image.url
    response = httpx.get(image_url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert response.status_code == 200 and response.content.startswith(b"\x89PNG")
    assert time.monotonic() - started < 60
