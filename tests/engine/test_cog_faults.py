"""A Cog server that is down, broken, hanging or busy, and cancels at every
stage: a prediction always ends, with an error a person can read, and never
fails just because it had to wait its turn."""

import json
import time

import pytest
from django.db import transaction

from app.models import Prediction, Version
from app.services import catalog, predictions
from tasks.rules import SUBMIT_RETRIES
from tests.conftest import COG_PREDICTOR_DIR, free_port, wait_for_status, wait_until
from tests.engine.broken_cog import BrokenCogServer

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SCHEMA = json.loads((COG_PREDICTOR_DIR / ".cog" / "openapi_schema.json").read_text())


def version_at(location):
    return catalog.add_version("local", "flaky", "cog", location, SCHEMA)


def repoint(version, location):
    Version.objects.filter(pk=version.pk).update(location=location)


@pytest.fixture
def broken(request):
    server = BrokenCogServer(request.param).start()
    yield server
    server.stop()


# --- A server that is down or broken: the prediction fails, clearly, in bounded time ---


def test_a_model_server_that_went_down_fails_the_prediction_with_a_clear_error(worker, alice, stored_files):
    location = f"http://127.0.0.1:{free_port()}"
    version = version_at(location)
    version.set_availability(True)  # it passed its health check a moment ago, then went down
    started = time.monotonic()

    prediction = predictions.start(version, {"prompt": "nobody home"}, owner=alice)
    prediction = wait_for_status(prediction.id, timeout=60)

    assert prediction.status == "failed"
    assert prediction.error == f"The model server at {location} could not connect."
    assert prediction.completed_at and not prediction.dispatched_at
    assert time.monotonic() - started < 30  # five retries with backoff, not forever
    stored_files.assert_intact(prediction)


@pytest.mark.parametrize(
    "broken, error",
    [
        ("500", "The model server answered 500: Internal Server Error"),
        ("garbage", "The model server answered with something that is not JSON."),
        ("hang", "The model server at {url} timed out."),
    ],
    indirect=["broken"],
    ids=["500", "garbage", "hang"],
)
def test_a_broken_model_server_fails_the_prediction_after_bounded_retries(worker, alice, broken, error, stored_files):
    version = version_at(broken.url)

    prediction = predictions.start(version, {"prompt": "anyone?"}, owner=alice)
    prediction = wait_for_status(prediction.id, timeout=90)

    assert prediction.status == "failed"
    assert prediction.error == error.format(url=broken.url)
    assert len(broken.puts(prediction.id)) == SUBMIT_RETRIES + 1
    time.sleep(0.5)
    assert len(broken.puts(prediction.id)) == SUBMIT_RETRIES + 1  # and then it stops trying
    stored_files.assert_intact(prediction)


# --- Busy: queue and wait, never fail --------------------------------------------------


@pytest.mark.parametrize("broken", ["busy"], indirect=True)
def test_a_model_server_that_stays_busy_keeps_the_prediction_waiting_instead_of_failing_it(
    worker, cog_server, alice, broken, stored_files
):
    version = version_at(broken.url)

    prediction = predictions.start(version, {"prompt": "patience"}, owner=alice)
    # Answered "At capacity" more times than any error would be retried.
    wait_until(lambda: len(broken.puts(prediction.id)) > SUBMIT_RETRIES + 2, timeout=30, message="409s")
    prediction.refresh_from_db()
    assert prediction.status == "starting" and prediction.error == ""

    repoint(version, cog_server.url)  # the slot frees up
    prediction = wait_for_status(prediction.id)

    assert prediction.status == "succeeded", prediction.error
    assert prediction.outputs.count() == 1
    stored_files.assert_intact(prediction)


def test_a_busy_model_server_queues_the_prediction_instead_of_failing_it(worker, cog_version, alice, stored_files):
    slow = predictions.start(cog_version, {"prompt": "slow", "step_delay": 0.4, "num_inference_steps": 5}, owner=alice)
    wait_for_status(slow.id, statuses=("processing",))

    queued = predictions.start(cog_version, {"prompt": "next in line"}, owner=alice)
    seen = set()

    def refused_while_busy():
        queued.refresh_from_db()
        seen.add(queued.status)
        return queued.attempted_at and not queued.dispatched_at

    wait_until(refused_while_busy, timeout=10, message="the worker to try and be told 'busy'")
    assert Prediction.objects.get(pk=slow.pk).status == "processing"
    assert seen == {"starting"}

    slow = wait_for_status(slow.id)
    queued = wait_for_status(queued.id)
    assert (slow.status, queued.status) == ("succeeded", "succeeded"), queued.error
    assert queued.dispatch_attempts == 1
    assert queued.outputs.count() == 1
    stored_files.assert_intact(slow, queued)


# --- Cancel, at every stage --------------------------------------------------------


def test_a_prediction_canceled_before_a_worker_picks_it_up_never_runs(worker, cog_version, alice, stored_files):
    with transaction.atomic():  # its task is queued only when this commits
        prediction = predictions.start(cog_version, {"prompt": "never mind"}, owner=alice)
        assert predictions.cancel(prediction)

    after = predictions.start(cog_version, {"prompt": "queued behind it"}, owner=alice)
    assert wait_for_status(after.id).status == "succeeded"

    prediction.refresh_from_db()
    assert prediction.status == "canceled" and prediction.completed_at
    assert prediction.attempted_at is None and prediction.dispatched_at is None  # no worker tried to send it
    assert not prediction.outputs.exists()
    stored_files.assert_intact(prediction, after)


def test_canceling_a_prediction_waiting_for_a_busy_server_means_it_never_runs(worker, cog_version, api, stored_files):
    slow = api.post(
        "/v1/predictions",
        json={"version": cog_version.id, "input": {"prompt": "hog", "step_delay": 0.4, "num_inference_steps": 5}},
    ).json()
    wait_for_status(slow["id"], statuses=("processing",))
    waiting = api.post("/v1/predictions", json={"version": cog_version.id, "input": {"prompt": "waiting"}}).json()
    wait_until(lambda: Prediction.objects.get(pk=waiting["id"]).attempted_at, message="a 409 for the second")

    canceled = api.post(f"/v1/predictions/{waiting['id']}/cancel")

    assert canceled.status_code == 200
    assert canceled.json()["status"] == "canceled"
    time.sleep(0.3)  # a try already under way when the cancel came ends
    last_attempt = Prediction.objects.get(pk=waiting["id"]).attempted_at
    assert wait_for_status(slow["id"]).status == "succeeded"
    time.sleep(1.5)  # longer than the worker waits between tries
    waiting = Prediction.objects.get(pk=waiting["id"])
    assert waiting.status == "canceled"
    assert waiting.attempted_at == last_attempt and waiting.dispatched_at is None  # no further try
    assert not waiting.outputs.exists()
    stored_files.assert_intact(waiting, slow["id"])


def test_canceling_a_running_prediction_stops_the_model_server(worker, cog_version, api, stored_files):
    long = api.post(
        "/v1/predictions",
        json={"version": cog_version.id, "input": {"prompt": "forever", "step_delay": 1, "num_inference_steps": 20}},
    ).json()
    wait_for_status(long["id"], statuses=("processing",))
    wait_until(lambda: "step 1/20" in Prediction.objects.get(pk=long["id"]).logs, message="the first step")

    canceled = api.post(f"/v1/predictions/{long['id']}/cancel")

    assert canceled.status_code == 200
    assert canceled.json()["status"] == "canceled"
    # The server's only slot is free again: the next prediction runs at once,
    # not after the 18 s the canceled one had left.
    started = time.monotonic()
    after = api.post("/v1/predictions", json={"version": cog_version.id, "input": {"prompt": "my turn"}}).json()
    assert wait_for_status(after["id"], timeout=12).status == "succeeded"
    assert time.monotonic() - started < 12
    long = Prediction.objects.get(pk=long["id"])
    assert long.status == "canceled" and long.error == ""
    assert "step 20/20" not in long.logs
    stored_files.assert_intact(long, after["id"])


def test_canceling_a_finished_prediction_changes_nothing(worker, cog_version, api):
    created = api.post("/v1/predictions", json={"version": cog_version.id, "input": {"prompt": "done"}}).json()
    done = wait_for_status(created["id"])
    assert done.status == "succeeded"
    before = api.get(f"/v1/predictions/{done.id}").json()

    answer = api.post(f"/v1/predictions/{done.id}/cancel")

    assert answer.status_code == 200
    assert answer.json() == before
    assert api.get(f"/v1/predictions/{done.id}").json() == before
