"""A worker killed with SIGKILL, a Cog server restarted, or its completed
webhook lost, in the middle of a prediction: the database is the source of
truth, and every prediction ends, with all of its outputs and no stray files."""

import json
import os
import signal
import subprocess
import sys

import pytest
from django.conf import settings
from django.utils import timezone
from kombu import Connection

from app.models import Prediction, Version
from app.services import catalog, predictions
from tasks.reconciler import reconcile
from tests.conftest import COG_PREDICTOR_DIR, ROOT, CogServer, Worker, wait_for_status, wait_until
from tests.engine.broken_cog import BrokenCogServer, WebhookDroppingProxy

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SCHEMA = json.loads((COG_PREDICTOR_DIR / ".cog" / "openapi_schema.json").read_text())


@pytest.fixture
def killable(worker):
    """The session's worker, to kill; a fresh one takes its place afterwards."""
    yield worker
    if worker.process.poll() is not None:
        replace(worker)


def replace(worker):
    """Start a fresh worker process where a killed one was (as a supervisor would)."""
    fresh = Worker(worker.env).start()
    worker.process, worker.log_path = fresh.process, fresh.log_path


def reconcile_until_ended(prediction_id, timeout=45):
    """Run the reconciler as beat would, until the prediction is terminal."""

    def ended():
        reconcile()
        prediction = Prediction.objects.get(pk=prediction_id)
        return prediction if prediction.is_terminal else None

    return wait_until(ended, timeout=timeout, interval=0.5, message=f"prediction {prediction_id} to end")


def test_a_worker_killed_after_the_hand_off_loses_nothing(killable, cog_version, alice, stored_files):
    prediction = predictions.start(
        cog_version, {"prompt": "survivor", "step_delay": 0.3, "num_inference_steps": 6}, owner=alice
    )
    wait_until(lambda: Prediction.objects.get(pk=prediction.pk).dispatched_at, message="the hand-off")

    killable.kill()

    # No worker at all now: the result comes by webhook to the web process.
    prediction = wait_for_status(prediction.id)
    assert prediction.status == "succeeded", prediction.error
    assert prediction.logs.strip().endswith("step 6/6")
    assert prediction.outputs.count() == 1
    stored_files.assert_intact(prediction)


def test_a_worker_killed_during_the_hand_off_is_replaced_and_the_prediction_still_runs(
    killable, cog_server, alice, stored_files
):
    with BrokenCogServer("hang") as hanging:
        version = catalog.add_version("local", "handoff", "cog", hanging.url, SCHEMA)
        prediction = predictions.start(version, {"prompt": "handed over twice"}, owner=alice)
        wait_until(lambda: hanging.puts(prediction.id), message="the worker to be stuck sending it")

        killable.kill()  # the broker's message went with it

    Version.objects.filter(pk=version.pk).update(location=cog_server.url)  # the server answers again
    replace(killable)
    prediction.refresh_from_db()
    assert prediction.status == "starting" and prediction.dispatched_at is None
    wait_until(
        lambda: (timezone.now() - prediction.attempted_at).total_seconds() > settings.DISPATCH_DEADLINE,
        message="the dispatch deadline",
    )

    reconcile()

    prediction = wait_for_status(prediction.id)
    assert prediction.status == "succeeded", prediction.error
    assert prediction.outputs.count() == 1
    stored_files.assert_intact(prediction)


@pytest.fixture
def own_cog_server(site):
    server = CogServer(COG_PREDICTOR_DIR).uploading().start()
    yield server
    server.stop()


@pytest.fixture
def proxied_cog_server(site):
    """A Cog server reached through a proxy that loses completed webhooks: its
    upload token is the proxy's, the location its version is imported from."""
    server = CogServer(COG_PREDICTOR_DIR)
    with WebhookDroppingProxy(server.url, drop=1) as proxy:
        server.uploading(proxy.url).start()
        yield proxy
        server.stop()


def _start_interrupted(server, alice):
    version = catalog.import_version(server.url, "local/restarting")
    prediction = predictions.start(
        version, {"prompt": "interrupted", "step_delay": 0.4, "num_inference_steps": 6}, owner=alice
    )
    wait_until(lambda: "step 1/6" in Prediction.objects.get(pk=prediction.pk).logs, message="the first step")
    return prediction


def test_a_model_server_restarted_mid_prediction_still_ends_the_prediction(worker, own_cog_server, alice, stored_files):
    prediction = _start_interrupted(own_cog_server, alice)

    own_cog_server.stop()  # SIGTERM, as a supervisor restarting it sends
    own_cog_server.start()  # same port

    prediction = reconcile_until_ended(prediction.id)
    if prediction.status == "failed":
        # Cog reports its predictor process dying; say what that means here.
        assert prediction.error.startswith("The model server crashed or was restarted"), prediction.error
    else:
        assert prediction.status == "succeeded" and prediction.outputs.count() == 1
    stored_files.assert_intact(prediction)


def test_a_model_server_killed_outright_runs_the_prediction_again_once_it_is_back(
    worker, own_cog_server, alice, stored_files
):
    prediction = _start_interrupted(own_cog_server, alice)

    os.killpg(own_cog_server.process.pid, signal.SIGKILL)  # no chance to report anything
    own_cog_server.process.wait()
    own_cog_server.start()  # same port, the prediction forgotten

    prediction = reconcile_until_ended(prediction.id)
    # Sent again with the same input (and seed): the person gets their image.
    assert prediction.status == "succeeded", prediction.error
    assert prediction.dispatch_attempts == 2
    assert prediction.outputs.count() == 1
    stored_files.assert_intact(prediction)


def test_a_lost_completed_webhook_still_ends_the_prediction_with_its_outputs(
    worker, proxied_cog_server, alice, settings, stored_files
):
    settings.DISPATCH_DEADLINE = 0.5
    proxy = proxied_cog_server
    version = catalog.import_version(proxy.url, "local/lossy")
    Version.objects.filter(pk=version.pk).update(timeout=4)
    prediction = predictions.start(version, {"prompt": "lost and found", "num_outputs": 2}, owner=alice)
    wait_until(lambda: proxy.dropped.get(prediction.id), message="the completed webhook to be lost")
    prediction.refresh_from_db()
    # The server finished; the app never heard (its start webhook may still be on its way).
    assert prediction.status in ("starting", "processing")

    prediction = reconcile_until_ended(prediction.id)

    # Silence alone is no loss (a webhook may be late): only once nothing came
    # for the version's whole timeout was it sent again; the server had
    # forgotten it, so it ran again (same input and seed).
    assert prediction.status == "succeeded", prediction.error
    assert prediction.dispatch_attempts == 2
    assert (prediction.completed_at - prediction.dispatched_at).total_seconds() > 4
    assert prediction.outputs.count() == 2
    stored_files.assert_intact(prediction)


def test_a_long_quiet_step_is_not_mistaken_for_a_lost_prediction(worker, cog_version, alice, settings, stored_files):
    settings.DISPATCH_DEADLINE = 0.5  # the reconciler asks the server again after 0.5 s of silence
    prediction = predictions.start(
        cog_version, {"prompt": "thinking", "step_delay": 4, "num_inference_steps": 1}, owner=alice
    )
    wait_for_status(prediction.id, statuses=("processing",))

    prediction = reconcile_until_ended(prediction.id, timeout=20)

    assert prediction.status == "succeeded", prediction.error
    assert prediction.dispatch_attempts == 1  # it was running all along; never sent again
    stored_files.assert_intact(prediction)


PRODUCER = """
import sys
from kombu import Connection
transport, folder, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
options = {"data_folder_in": folder, "data_folder_out": folder, "control_folder": folder + "/control"}
with Connection("filesystem://", transport=transport, transport_options=options) as connection:
    queue = connection.SimpleQueue("race")
    for i in range(count):
        queue.put({"i": i, "padding": "x" * 20000})
"""


@pytest.mark.embedded
@pytest.mark.skipif(not settings.CELERY_BROKER_URL.startswith("filesystem://"), reason="the embedded broker only")
def test_a_worker_never_reads_a_half_written_message_from_the_embedded_broker(tmp_path):
    """The web process publishes while the worker polls the same folder; a
    message read half-written killed the worker ("Unrecoverable error")."""
    count = 1500
    producer = subprocess.Popen(
        [sys.executable, "-c", PRODUCER, settings.CELERY_BROKER_TRANSPORT, str(tmp_path), str(count)], cwd=ROOT
    )
    options = {
        "data_folder_in": str(tmp_path),
        "data_folder_out": str(tmp_path),
        "control_folder": str(tmp_path / "control"),
        "polling_interval": 0.001,
    }
    try:
        with Connection(
            "filesystem://", transport=settings.CELERY_BROKER_TRANSPORT, transport_options=options
        ) as connection:
            queue = connection.SimpleQueue("race")
            received = [queue.get(timeout=20).payload["i"] for _ in range(count)]
    finally:
        producer.wait(30)

    assert sorted(received) == list(range(count))
