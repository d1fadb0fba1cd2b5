"""Webhooks Cog servers send to Lightbox: repeated, late, forged, garbage or
too large, the prediction a person sees stays right."""

import base64
import io
import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django.conf import settings as django_settings
from django.utils import timezone
from PIL import Image

from app.models import Prediction
from app.services import catalog
from app.services.backends import cog
from tests.api.test_outbound_webhooks import Receiver
from tests.conftest import COG_PREDICTOR_DIR, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

SCHEMA = json.loads((COG_PREDICTOR_DIR / ".cog" / "openapi_schema.json").read_text())


def png_data_uri(colour):
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), colour).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


SUCCEEDED = {
    "status": "succeeded",
    "logs": "step 1/2\nstep 2/2\n",
    "output": [png_data_uri("red"), png_data_uri("blue")],
    "error": None,
    "metrics": {"predict_time": 0.4},
}


@pytest.fixture
def running(site, alice):
    """A prediction a Cog server is running: handed over, nothing heard yet."""
    version = catalog.add_version("local", "hooked", "cog", "http://127.0.0.1:9", SCHEMA)
    now = timezone.now()
    prediction = Prediction.objects.create(
        version=version,
        owner=alice,
        input={"prompt": "a fox", "seed": 1},
        status="processing",
        started_at=now,
        dispatched_at=now,
        heard_at=now,
        remote_id="x",
        dispatch_attempts=1,
    )
    prediction.remote_id = prediction.id
    prediction.save(update_fields=["remote_id"])
    return prediction


def deliver(prediction, payload=None, content=None, url=None):
    url = url or cog.webhook_url(prediction)
    if payload is not None:
        content = json.dumps({"id": prediction.id, **payload}).encode()
    return httpx.post(url, content=content, headers={"Content-Type": "application/json"}, timeout=30)


def stored_files(prediction):
    folder = django_settings.MEDIA_ROOT / "outputs" / prediction.id[:2] / prediction.id
    return sorted(path.name for path in folder.iterdir()) if folder.exists() else []


def test_a_completed_webhook_delivered_again_stores_one_set_of_outputs(running):
    # Cog retries the terminal webhook when an answer is slow: the deliveries overlap.
    with ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(lambda _: deliver(running, SUCCEEDED), range(3)))
    answers.append(deliver(running, SUCCEEDED))

    assert [answer.status_code for answer in answers] == [200] * 4
    running.refresh_from_db()
    assert running.status == "succeeded"
    assert [(o.index, o.width) for o in running.outputs.all()] == [(0, 16), (1, 16)]
    # No copy left behind by the deliveries that lost the race.
    referenced = [name.rsplit("/", 1)[1] for o in running.outputs.all() for name in (o.file.name, o.thumbnail.name)]
    assert stored_files(running) == sorted(referenced)
    assert len(referenced) == 4


@pytest.mark.e2e
def test_a_completed_webhook_delivered_again_tells_the_caller_once(worker, running):
    receiver = Receiver()
    try:
        Prediction.objects.filter(pk=running.pk).update(webhook=receiver.url, webhook_events_filter=["completed"])
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda _: deliver(running, SUCCEEDED), range(2)))
        deliver(running, SUCCEEDED)

        wait_until(lambda: receiver.calls, message="the caller's completed webhook")
        time.sleep(1)  # a second one would have come by now
        assert [p["status"] for p in receiver.payloads()] == ["succeeded"]
        assert len(receiver.payloads()[0]["output"]) == 2
    finally:
        receiver.server.shutdown()


def test_a_late_webhook_never_undoes_the_result(running):
    assert deliver(running, SUCCEEDED).status_code == 200
    running.refresh_from_db()
    completed_at = running.completed_at

    # Cog sends these after "succeeded" now and then; a retried "failed" from
    # an earlier run of the same id could come too.
    for late in [
        {"status": "processing", "logs": "", "output": None},
        {"status": "processing", "logs": "step 1/2\n", "output": [png_data_uri("green")]},
        {"status": "failed", "logs": "", "error": "CUDA out of memory"},
        {"status": "canceled", "logs": ""},
    ]:
        assert deliver(running, late).status_code == 200

    running.refresh_from_db()
    assert running.status == "succeeded"
    assert running.error == ""
    assert running.logs == SUCCEEDED["logs"]
    assert running.completed_at == completed_at
    assert running.outputs.count() == 2


def test_an_older_progress_webhook_arriving_late_does_not_reset_progress(running):
    deliver(running, {"status": "processing", "logs": "step 1/2\n", "output": None})
    deliver(running, {"status": "processing", "logs": "", "output": None})  # out of order: older, shorter

    running.refresh_from_db()
    assert running.status == "processing"
    assert running.progress == (1, 2)


def test_a_webhook_with_a_wrong_token_is_forbidden(running, alice):
    other = Prediction.objects.create(version=running.version, owner=alice, input={"prompt": "other"})

    forged = cog.webhook_url(running).rsplit("/", 1)[0] + "/not-the-token"
    borrowed = cog.webhook_url(running).replace(running.id, other.id)  # a real token, for another prediction

    assert deliver(running, SUCCEEDED, url=forged).status_code == 403
    assert deliver(other, SUCCEEDED, url=borrowed).status_code == 403
    assert set(Prediction.objects.values_list("status", flat=True)) == {"processing", "starting"}
    assert not running.outputs.exists()


def test_a_garbage_webhook_is_a_bad_request(running):
    for content in [
        b"<html>502 Bad Gateway</html>",
        b"\xff\xfe\x00",
        b'["succeeded"]',
        b"",
        b'{"status": "exploded"}',
        b'{"logs": "no status"}',
    ]:
        answer = deliver(running, content=content)
        assert answer.status_code == 400, content

    running.refresh_from_db()
    assert running.status == "processing" and running.logs == ""


def test_an_oversize_webhook_is_refused(running, settings):
    settings.WEBHOOK_MAX_BYTES = 4096
    huge = {**SUCCEEDED, "output": ["data:image/png;base64," + "A" * 8000]}

    assert deliver(running, huge).status_code == 413

    running.refresh_from_db()
    assert running.status == "processing" and not running.outputs.exists()
    assert deliver(running, SUCCEEDED).status_code == 200  # the same server's normal webhook still works


def test_a_webhook_for_a_deleted_prediction_is_gone(running):
    url = cog.webhook_url(running)
    running.delete()

    answer = deliver(running, SUCCEEDED, url=url)

    assert answer.status_code == 410  # so the Cog server stops retrying
    assert not Prediction.objects.exists()


def test_nul_characters_in_a_models_logs_do_not_lose_the_result(running):
    """A model may print anything; PostgreSQL cannot store U+0000 in text."""
    noisy = {**SUCCEEDED, "logs": "step 1/2\n\x00\x00binary junk\nstep 2/2\n"}

    assert deliver(running, noisy).status_code == 200

    running.refresh_from_db()
    assert running.status == "succeeded"
    assert running.logs == "step 1/2\nbinary junk\nstep 2/2\n"
    assert running.outputs.count() == 2


DIFFUSERS_NOISE = (
    "/venv/lib/python3.11/site-packages/diffusers/configuration_utils.py:140: FutureWarning: Accessing config"
    " attribute `in_channels` directly via 'UNet2DConditionModel' object attribute is deprecated.\n"
    '  deprecate("direct config name access", "1.0.0", deprecation_message, standard_warn=False)\n'
    "You have disabled the safety checker for <class 'StableDiffusionPipeline'> by passing `safety_checker=None`.\n"
)


def test_library_warnings_stay_out_of_the_users_logs_but_reach_the_servers(running, caplog):
    logs = "Using seed: 1\n" + DIFFUSERS_NOISE + "step 1/2\nstep 2/2\n"
    deliver(running, {"status": "processing", "logs": "Using seed: 1\n" + DIFFUSERS_NOISE, "output": None})
    running.refresh_from_db()
    assert running.logs == "Using seed: 1\n"

    with caplog.at_level("WARNING", logger="app.services.predictions"):
        deliver(running, {**SUCCEEDED, "logs": logs})

    running.refresh_from_db()
    assert running.logs == "Using seed: 1\nstep 1/2\nstep 2/2\n"
    assert running.progress == (2, 2)
    [record] = [r for r in caplog.records if "Library warnings" in r.getMessage()]
    assert running.id in record.getMessage() and "FutureWarning: Accessing config" in record.getMessage()
    assert "You have disabled the safety checker" in record.getMessage()
