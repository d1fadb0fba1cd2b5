"""Late webhooks never make a prediction run twice. A Cog server forgets a
prediction the moment it ends, and a PUT with its id then runs it again, so
the reconciler must not take silence for loss: it sends a prediction again
only when the server restarted since it accepted it (its health check names
its setup's start), or when nothing came for the version's whole timeout
(then the webhook was lost, not late)."""

import os
from datetime import timedelta

import pytest
from django.utils import timezone

from app.models import Prediction, Version
from app.services import catalog, predictions
from tasks.reconciler import reconcile
from tests.conftest import COG_PREDICTOR_DIR, CogServer, wait_until
from tests.engine.broken_cog import BrokenCogServer, WebhookDelayingProxy

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# The reconciler's quiet threshold in these tests (LIGHTBOX_DISPATCH_DEADLINE),
# how late every webhook reaches the app (far past it) and how many predictions
# run; the case, at the shipped threshold, is
# LATE_WEBHOOKS="30 35 10" pytest tests/engine/test_late_webhooks.py -k threshold -s
DEADLINE, LATE_BY, COUNT = (float(n) for n in os.environ.get("LATE_WEBHOOKS", "1 4 3").split())


@pytest.fixture
def slow_network_cog_server(site, tmp_path):
    """A real Cog server whose webhooks all arrive LATE_BY seconds late; it
    writes each run's prompt to a file, so runs can be counted."""
    runs = tmp_path / "runs.log"
    runs.touch()
    server = CogServer(COG_PREDICTOR_DIR, env={"TEST_PREDICTOR_RUN_LOG": str(runs)})
    with WebhookDelayingProxy(server.url, delay=LATE_BY) as proxy:
        server.uploading(proxy.url).start()
        yield proxy, runs
        server.stop()


def test_webhooks_arriving_past_the_quiet_threshold_cause_no_second_run(
    worker, slow_network_cog_server, alice, settings, stored_files
):
    settings.DISPATCH_DEADLINE = DEADLINE
    proxy, runs = slow_network_cog_server
    version = catalog.import_version(proxy.url, "local/far-away")
    prompts = [f"late news {n}" for n in range(int(COUNT))]
    started = [
        predictions.start(version, {"prompt": prompt, "num_inference_steps": 2}, owner=alice) for prompt in prompts
    ]

    def all_ended():
        reconcile()  # as beat does, every half second: far more often than the webhooks come
        rows = Prediction.objects.filter(pk__in=[p.pk for p in started])
        return all(row.is_terminal for row in rows) and list(rows)

    ended = wait_until(all_ended, timeout=60 + LATE_BY + 5 * COUNT, interval=0.5, message="the predictions to end")
    twice = len(runs.read_text().splitlines()) - len(prompts)
    print(f"\n{len(prompts)} predictions, webhooks {LATE_BY:g} s late, threshold {DEADLINE:g} s: {twice} ran twice")

    for prediction in ended:
        assert prediction.status == "succeeded", prediction.error
        assert prediction.dispatch_attempts == 1
        # Quiet past the threshold for a while: the reconciler looked and held back.
        assert prediction.completed_at - prediction.dispatched_at > timedelta(seconds=DEADLINE)
    assert sorted(runs.read_text().splitlines()) == sorted(prompts)  # each ran once
    stored_files.assert_intact(*ended)


def _quiet(version, boot):
    """A prediction the server at `version` accepted while its setup had
    started at `boot`, and has not spoken of since the threshold passed."""
    then = timezone.now() - timedelta(minutes=2)
    return Prediction.objects.create(
        version=version,
        input={"prompt": "quiet"},
        status="processing",
        created_at=then,
        attempted_at=then,
        dispatched_at=then,
        heard_at=then,
        remote_id="x",
        dispatch_attempts=1,
        server_boot=boot,
    )


@pytest.fixture
def accepting():
    with BrokenCogServer("accept", boot="2026-12-02T09:00:00.000000001+00:00") as server:
        yield server


def _version(server, timeout=600):
    version = catalog.add_version("local", "quiet", "cog", server.url)
    Version.objects.filter(pk=version.pk).update(timeout=timeout)
    return Version.objects.get(pk=version.pk)


def test_a_quiet_prediction_on_a_server_that_did_not_restart_is_not_sent_again(accepting, queued):
    prediction = _quiet(_version(accepting), accepting.boot)

    reconcile()

    assert accepting.puts(prediction.id) == []
    prediction.refresh_from_db()
    assert (prediction.status, prediction.dispatch_attempts) == ("processing", 1)


def test_a_server_that_restarted_since_it_accepted_the_prediction_is_sent_it_again(accepting, queued):
    prediction = _quiet(_version(accepting), accepting.boot)
    accepting.boot = "2026-12-02T09:05:00.000000002+00:00"  # setup started again: a new run of the server

    reconcile()
    reconcile()  # heard from now: not twice

    assert len(accepting.puts(prediction.id)) == 1
    prediction.refresh_from_db()
    assert (prediction.status, prediction.dispatch_attempts) == ("processing", 2)
    assert prediction.server_boot == accepting.boot


@pytest.mark.parametrize("server_says", [True, False])
def test_without_a_boot_to_compare_the_server_is_asked_only_past_the_timeout(accepting, queued, server_says):
    if not server_says:
        accepting.boot = None  # a Cog server whose health check names no setup time
    version = _version(accepting, timeout=300)
    prediction = _quiet(version, boot="")  # accepted when its health check did not say

    reconcile()
    assert accepting.puts(prediction.id) == []

    Version.objects.filter(pk=version.pk).update(timeout=60)  # now two minutes quiet is past it
    reconcile()

    # Nothing for the whole timeout: its webhook was lost, not late. It runs again.
    assert len(accepting.puts(prediction.id)) == 1
    prediction.refresh_from_db()
    assert (prediction.status, prediction.dispatch_attempts) == ("processing", 2)


def test_a_prediction_its_server_spoke_of_after_the_hand_over_is_not_sent_again(accepting, queued):
    """The worker died between the server's 202 and recording the hand-over;
    the server's webhooks came since. It has the prediction: sending it again
    would run it twice, should it have finished with its last webhook late."""
    now = timezone.now()
    prediction = Prediction.objects.create(
        version=_version(accepting),
        input={"prompt": "handed over, not recorded"},
        status="processing",
        created_at=now - timedelta(minutes=2),
        attempted_at=now - timedelta(minutes=2),
        heard_at=now - timedelta(minutes=1),
        server_boot=accepting.boot,
    )

    reconcile()

    assert queued == [] and accepting.puts(prediction.id) == []
    prediction.refresh_from_db()
    assert prediction.dispatched_at == prediction.heard_at and prediction.dispatch_attempts == 1
    assert prediction.status == "processing"

    accepting.boot = "2026-12-02T09:05:00.000000002+00:00"  # and should the server restart, it is lost there
    reconcile()
    assert len(accepting.puts(prediction.id)) == 1
