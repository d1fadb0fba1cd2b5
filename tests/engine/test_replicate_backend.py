"""Predictions on Replicate's cloud, played by tests.fakes.replicate_cloud."""

import httpx
import pytest

from app.models import Prediction
from app.services import backends, catalog, predictions
from tests.conftest import SDXL, wait_for_status, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SMALL = {"prompt": "an astronaut riding a horse", "width": 64, "height": 64, "num_inference_steps": 4}


@pytest.fixture(autouse=True)
def _reset(replicate_cloud):
    replicate_cloud.reset()
    yield


def test_a_polled_prediction_succeeds_and_keeps_its_images_after_replicate_deletes_them(
    worker, site, sdxl, alice, replicate_cloud
):
    prediction = predictions.start(sdxl, SMALL, owner=alice)

    prediction = wait_for_status(prediction.id)

    assert prediction.status == "succeeded", prediction.error
    assert prediction.remote_id
    sent = next(r for r in replicate_cloud.requests if r.method == "POST" and r.path == "/v1/predictions")
    assert sent.json["version"] == SDXL and sent.json["input"]["seed"] == prediction.input["seed"]
    assert "webhook" not in sent.json  # 127.0.0.1 cannot be reached from the internet: poll
    replicate_cloud.expire_files()
    output = prediction.outputs.get()
    assert (output.width, output.height) == (64, 64)
    response = httpx.get(site.url + output.file.url)
    assert response.status_code == 200 and response.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_nsfw_refusal_fails_the_prediction_in_plain_words(worker, sdxl, alice, replicate_cloud):
    replicate_cloud.script(outcome="nsfw")

    prediction = wait_for_status(predictions.start(sdxl, SMALL, owner=alice).id)

    assert prediction.status == "failed"
    assert "safety checker flagged the image as NSFW" in prediction.error


def test_a_model_error_reaches_the_prediction(worker, sdxl, alice, replicate_cloud):
    replicate_cloud.script(outcome="error", error="CUDA out of memory")

    prediction = wait_for_status(predictions.start(sdxl, SMALL, owner=alice).id)

    assert prediction.status == "failed" and "CUDA out of memory" in prediction.error


def test_replicate_down_fails_the_prediction_after_retries(worker, sdxl, alice, replicate_cloud):
    replicate_cloud.fault("error", count=50, method="POST", path="/v1/predictions", status=500)

    prediction = wait_for_status(predictions.start(sdxl, SMALL, owner=alice).id, timeout=60)

    assert prediction.status == "failed" and "Replicate answered 500" in prediction.error


def test_cancel_reaches_replicate(worker, sdxl, alice, replicate_cloud):
    replicate_cloud.script(hold="processing")
    prediction = predictions.start(sdxl, SMALL, owner=alice)
    prediction = wait_until(lambda: Prediction.objects.filter(pk=prediction.pk).exclude(remote_id="").first())

    predictions.cancel(prediction)

    assert prediction.status == "canceled"
    replicate_cloud.wait_for_status(prediction.remote_id, ("canceled",))


def test_without_a_token_replicate_versions_show_as_unavailable(sdxl, settings):
    settings.REPLICATE_API_TOKEN = ""

    assert not catalog.refresh_availability(sdxl, max_age=0)
    assert "REPLICATE_API_TOKEN" in sdxl.unavailable_reason


def test_signed_webhooks_complete_the_prediction(worker, site, sdxl, alice, replicate_cloud, settings):
    settings.REPLICATE_USE_WEBHOOKS = "on"
    prediction = Prediction.objects.create(version=sdxl, input={**SMALL, "seed": 3}, owner=alice)

    prediction.mark_dispatched(backends.replicate.submit(prediction))

    prediction = wait_for_status(prediction.id)
    assert prediction.status == "succeeded"
    assert prediction.outputs.count() == 1
    sent = next(r for r in replicate_cloud.requests if r.path == "/v1/predictions")
    assert sent.json["webhook"] == f"{site.url}/hooks/replicate/{prediction.id}"


def test_a_webhook_with_a_bad_signature_is_refused(site, sdxl, alice):
    prediction = Prediction.objects.create(version=sdxl, input=SMALL, owner=alice, remote_id="abc")

    response = httpx.post(
        f"{site.url}/hooks/replicate/{prediction.id}",
        json={"id": "abc", "status": "succeeded", "output": []},
        headers={"webhook-id": "msg_1", "webhook-timestamp": "1700000000", "webhook-signature": "v1,AAAA"},
    )

    assert response.status_code == 401
    prediction.refresh_from_db()
    assert prediction.status == "starting"
