"""Beat dying is seen and does not stop recovery: /healthz fails within three
reconcile intervals of beat's last run and says why, the admin shows it,
workers run the reconciler themselves meanwhile, and whoever starts it, only
one run acts at a time (a lease in the database)."""

import os
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx
import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from app.models import Prediction, ReconcilerState
from app.services import catalog, predictions
from tasks.predictions import run_prediction
from tasks.reconciler import reconcile
from tests.conftest import ROOT, VENV_BIN, Worker, wait_for_status, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

HEALTH_TOKEN = "monitor-" + "m" * 30


def _lost(version):
    """A prediction whose message the broker lost, past the dispatch deadline."""
    then = timezone.now() - timedelta(hours=1)
    return Prediction.objects.create(
        version=version, input={"prompt": "lost"}, status="starting", created_at=then, attempted_at=then
    )


@pytest.fixture
def nowhere(transactional_db):
    return catalog.add_version("local", "nowhere", "cog", "http://127.0.0.1:9")


class _Sent(list):
    inside = go = None


@pytest.fixture
def sent(monkeypatch):
    """run_prediction.delay records the ids the reconciler re-sends, and the
    first call holds its run until `sent.go` is set."""
    ids, inside, go = _Sent(), threading.Event(), threading.Event()

    def delay(prediction_id):
        ids.append(prediction_id)
        inside.set()
        go.wait(10)

    monkeypatch.setattr(run_prediction, "delay", delay)
    ids.inside, ids.go = inside, go
    return ids


def _in_thread(function, *args):
    def run():
        try:
            return function(*args)
        finally:
            connection.close()  # this thread's own connection, before the test's flush

    return ThreadPoolExecutor(1).submit(run)


def test_two_reconcile_runs_at_once_do_not_both_act(nowhere, sent):
    lost = {_lost(nowhere).pk, _lost(nowhere).pk}
    first = _in_thread(reconcile)
    assert sent.inside.wait(10)  # the first run is busy re-sending one of them

    second = reconcile()  # as beat's next round, or a worker standing in, would

    assert second is False
    assert len(sent) == 1  # the second run acted on nothing
    sent.go.set()
    assert first.result(timeout=10) is True
    assert set(sent) == lost and len(sent) == 2
    state = ReconcilerState.current()
    assert state.lease_until is None and state.finished_by.startswith("beat (")


def test_a_run_whose_lease_was_taken_over_stops_acting(nowhere, monkeypatch):
    _lost(nowhere), _lost(nowhere)
    ids = []

    def delay(prediction_id):
        ids.append(prediction_id)
        # Paused past its lease (a frozen process): another run took it over.
        ReconcilerState.objects.update(holder="another run", lease_until=timezone.now() + timedelta(minutes=1))

    monkeypatch.setattr(run_prediction, "delay", delay)

    assert reconcile() is False
    assert len(ids) == 1
    assert ReconcilerState.current().holder == "another run"  # not released by the run that lost it


def test_the_lease_of_a_run_that_died_runs_out(nowhere, sent):
    lost = _lost(nowhere)
    sent.go.set()
    ReconcilerState.objects.create(holder="a worker killed mid-run", lease_until=timezone.now() + timedelta(minutes=1))
    assert reconcile() is False and sent == []

    ReconcilerState.objects.update(lease_until=timezone.now() - timedelta(seconds=1))

    assert reconcile() is True
    assert sent == [lost.pk]


def _health(site):
    return httpx.get(f"{site.url}/healthz", headers={"Authorization": f"Bearer {HEALTH_TOKEN}"}, timeout=5)


@pytest.fixture
def beat(worker_env, tmp_path):
    """A real celery beat, the reconciler every second, whose runs the
    session's worker takes."""
    log_path = tmp_path / "beat.log"
    process = subprocess.Popen(
        [str(VENV_BIN / "celery"), "-A", "lightbox", "beat", "--loglevel", "INFO", "-s", str(tmp_path / "schedule")],
        cwd=ROOT,
        env={**worker_env, "LIGHTBOX_RECONCILE_INTERVAL": "1"},
        stdout=open(log_path, "ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    yield process
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@pytest.mark.e2e
def test_healthz_fails_within_three_intervals_of_beat_dying_and_says_why(site, worker, beat, settings):
    settings.RECONCILE_INTERVAL = 1
    settings.HEALTH_TOKEN = HEALTH_TOKEN
    wait_until(lambda: _health(site).status_code == 200, timeout=60, interval=0.2, message="beat's first runs")
    assert _health(site).json()["beat"] == "ok"

    os.killpg(beat.pid, signal.SIGKILL)
    beat.wait()
    killed = time.monotonic()

    response = wait_until(
        lambda: (r := _health(site)).status_code == 503 and r, timeout=10, interval=0.1, message="/healthz to fail"
    )
    assert time.monotonic() - killed < 3 * 1 + 1  # three intervals after beat's last run, at most
    body = response.json()
    assert body["status"] == "failing" and body["database"] == body["broker"] == "ok"
    assert body["beat"].startswith("error: beat last ran the reconciler ")
    assert httpx.get(f"{site.url}/healthz").json() == {"status": "failing"}  # anyone: the status only


@pytest.mark.e2e
def test_a_prediction_that_needs_the_reconciler_ends_while_beat_is_down(
    worker_env, cog_version, alice, queued, stored_files
):
    # No beat at all; this worker stands in for it, every second.
    standby = Worker(
        {
            **worker_env,
            "LIGHTBOX_RECONCILER_STANDBY": "on",
            "LIGHTBOX_RECONCILE_INTERVAL": "1",
            "LIGHTBOX_DISPATCH_DEADLINE": "1",
        }
    ).start()
    try:
        prediction = predictions.start(cog_version, {"prompt": "beat is down"}, owner=alice)
        assert queued == [prediction.pk]  # its message is lost: only the reconciler sends it

        prediction = wait_for_status(prediction.pk, timeout=30)
    finally:
        standby.stop()

    assert prediction.status == "succeeded", prediction.error
    assert prediction.outputs.count() == 1
    state = ReconcilerState.current()
    assert state.beat_at is None and state.finished_by.startswith("worker celery@")
    assert "workers run it meanwhile" in state.beat_problem()
    stored_files.assert_intact(prediction)


def test_the_admin_shows_whether_beat_runs_the_reconciler(admin_user, settings):
    settings.RECONCILE_INTERVAL = 10
    client = Client()
    client.force_login(admin_user)

    page = client.get("/admin/app/reconcilerstate/")
    assert page.status_code == 200
    assert "beat has never run the reconciler, and no worker has run it since" in page.content.decode()

    ReconcilerState.beat_ran()
    ReconcilerState.objects.update(finished_at=timezone.now(), finished_by="beat (host pid 1, run 0)")
    page = client.get("/admin/app/reconcilerstate/")
    assert "never run" not in page.content.decode() and "beat (host pid 1, run 0)" in page.content.decode()

    ReconcilerState.objects.update(beat_at=timezone.now() - timedelta(seconds=45))
    page = client.get("/admin/app/reconcilerstate/").content.decode()
    assert "beat last ran the reconciler 45 s ago" in page and "workers run it meanwhile" in page
