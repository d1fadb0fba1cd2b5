"""The results path (Cog's webhooks and output uploads, Replicate's webhooks)
keeps its capacity whatever the clients do: through the real web process
(gunicorn with lightbox.webserver.Worker), a Cog server's upload and completed
webhook are answered at once while slow client requests hold every client
thread and 200 clients wait with `Prefer: wait`."""

import asyncio
import io
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx
import psycopg
import pytest
from django.db import connection
from django.urls import get_resolver, reverse
from django.utils import timezone
from PIL import Image

from app.models import ApiToken, Prediction
from app.services import catalog, predictions, storage
from app.services.backends import cog
from lightbox.webserver import RESULTS_PREFIX
from tests.conftest import COG_PREDICTOR_DIR, Gunicorn, free_port, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

SCHEMA = json.loads((COG_PREDICTOR_DIR / ".cog" / "openapi_schema.json").read_text())
CLIENT_THREADS = 2
WAITERS = 200


@pytest.fixture(scope="module")
def web(worker_env):
    """One worker with CLIENT_THREADS client threads, so that a few slow requests fill them."""
    server = Gunicorn(worker_env, threads=CLIENT_THREADS, results_threads=2).start()
    yield server.url
    server.stop()


def _idle_version(name):
    """A version whose server never runs anything, reported available (not asked again during the test)."""
    version = catalog.add_version("local", name, "cog", f"http://127.0.0.1:{free_port()}", SCHEMA, "0.23.1")
    version.set_availability(True)
    type(version).objects.filter(pk=version.pk).update(checked_at=timezone.now() + timedelta(days=1))
    return version


def _png():
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), "teal").save(buffer, "PNG")
    return buffer.getvalue()


class Waiters:
    """`count` `Prefer: wait` creates held open on an event loop of their own thread."""

    def __init__(self, url, token, version, count):
        self.url, self.token, self.version, self.count = url, token, version, count
        self.statuses = []
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self.thread.start()

    async def _run(self):
        limits = httpx.Limits(max_connections=self.count + 10, max_keepalive_connections=0)
        headers = {"Authorization": f"Bearer {self.token}", "Prefer": "wait=60"}
        async with httpx.AsyncClient(base_url=self.url, headers=headers, limits=limits, timeout=120) as client:
            await asyncio.gather(*(self._one(client, i) for i in range(self.count)))

    async def _one(self, client, i):
        body = {"version": self.version.pk, "input": {"prompt": f"waiter {i}"}}
        try:
            response = await client.post("/v1/predictions", json=body)
            self.statuses.append(response.status_code)
        except httpx.HTTPError as exc:
            self.statuses.append(type(exc).__name__)


class RowLock:
    """A transaction elsewhere holding a prediction's row lock: every request
    that changes the row (a cancel) waits, on its thread, until it ends."""

    def __init__(self, prediction):
        params = connection.get_connection_params()
        for key in ("cursor_factory", "context", "prepare_threshold"):
            params.pop(key, None)
        self.connection = psycopg.connect(**params)
        self.connection.execute("SELECT id FROM app_prediction WHERE id = %s FOR UPDATE", [prediction.pk])

    def release(self):
        self.connection.rollback()
        self.connection.close()


def test_every_results_route_is_served_by_the_results_pool(settings):
    hooks = next(pattern for pattern in get_resolver().url_patterns if getattr(pattern, "namespace", "") == "hooks")
    assert len(hooks.url_patterns) == 7  # each of them below
    for name, args in (
        ("hooks:cog", ["p", "t"]),
        ("hooks:cog-upload", ["t", "out.png"]),
        ("hooks:cog-upload-file", ["t", "u", "out.png"]),
        ("hooks:replicate", ["p"]),
        # Fine-tuning (trainapi): trainers' webhooks, a fine-tune's weights for its model server.
        ("hooks:cog-training", ["t", "t"]),
        ("hooks:replicate-training", ["t"]),
        ("hooks:weights", ["v", "t"]),
    ):
        assert reverse(name, args=args).startswith(RESULTS_PREFIX)
    assert storage.upload_url("http://127.0.0.1:5101").removeprefix(settings.SITE_URL).startswith(RESULTS_PREFIX)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the slow requests wait on a PostgreSQL row lock")
def test_a_cog_upload_and_webhook_are_answered_at_once_whatever_the_clients_do(web, alice, settings):
    settings.SITE_URL = web  # the webhook and upload URLs Cog servers are given point at it
    _, token = ApiToken.issue(alice)
    auth = {"Authorization": f"Bearer {token}"}
    idle = _idle_version("results-idle")
    model_server = _idle_version("results-cog")
    now = timezone.now()
    running = Prediction.objects.create(
        version=model_server,
        owner=alice,
        input={"prompt": "a fox", "seed": 1},
        status="processing",
        started_at=now,
        dispatched_at=now,
        heard_at=now,
        dispatch_attempts=1,
    )
    Prediction.objects.filter(pk=running.pk).update(remote_id=running.pk)
    locked = Prediction.objects.create(version=idle, owner=alice, input={"prompt": "locked"})

    waiters = Waiters(web, token, idle, WAITERS)
    wait_until(
        lambda: Prediction.objects.filter(version=idle).count() == WAITERS + 1,
        timeout=60,
        message=f"{WAITERS} waiting clients' predictions",
    )
    lock = RowLock(locked)
    slow = ThreadPoolExecutor(CLIENT_THREADS * 3)
    try:
        cancels = [
            slow.submit(httpx.post, f"{web}/v1/predictions/{locked.pk}/cancel", headers=auth, timeout=60)
            for _ in range(CLIENT_THREADS * 3)
        ]
        # Every client thread is taken: a client's GET is not answered.
        time.sleep(1)
        with pytest.raises(httpx.ReadTimeout):
            httpx.get(f"{web}/v1/predictions/{running.pk}", headers=auth, timeout=2)

        started = time.monotonic()
        uploaded = httpx.put(
            storage.upload_url(model_server.location) + "out-0.png",
            content=_png(),
            headers={"X-Prediction-Id": running.pk},
            timeout=10,
        )
        upload_seconds = time.monotonic() - started
        assert uploaded.status_code == 201
        completed = {
            "id": running.pk,
            "status": "succeeded",
            "logs": "step 1/1\n",
            "output": [uploaded.headers["Location"]],
            "error": None,
            "metrics": {"predict_time": 0.2},
        }
        started = time.monotonic()
        answered = httpx.post(cog.webhook_url(running), json=completed, timeout=10)
        webhook_seconds = time.monotonic() - started
        assert answered.status_code == 200
        assert upload_seconds < 2 and webhook_seconds < 2, (upload_seconds, webhook_seconds)
        # Replicate's webhooks take the same path (this one is unsigned: refused, at once).
        started = time.monotonic()
        refused = httpx.post(f"{web}/hooks/replicate/{running.pk}", json={"id": "x"}, timeout=10)
        assert refused.status_code == 401 and time.monotonic() - started < 2
        running.refresh_from_db()
        assert running.status == "succeeded"
        assert running.outputs.count() == 1
        assert not any(future.done() for future in cancels)  # the clients' threads were still held
        assert len(waiters.statuses) == 0  # and the waiting clients still waited
    finally:
        lock.release()
        slow.shutdown(wait=True)
        for prediction in Prediction.objects.filter(version=idle).active():
            predictions.fail(prediction, "Ended by the test")
        waiters.thread.join(60)
    assert [future.result().status_code for future in cancels] == [200] * len(cancels)
    assert waiters.statuses == [201] * WAITERS
