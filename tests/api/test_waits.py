"""app.core.waits: a request waiting for a prediction (`Prefer: wait`) wakes when the
prediction ends in another thread or process, by PostgreSQL's NOTIFY, and not
only when it next looks at the row."""

import asyncio
import json
import threading
import time

import pytest
from django.db import connection, connections

from app.core import waits
from app.models import Prediction, ReconcilerState
from app.services import catalog, predictions

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def running(alice):
    version = catalog.add_version("local", "waits", "cog", "http://127.0.0.1:9", {}, "0.23.1")
    return Prediction.objects.create(version=version, owner=alice, input={"prompt": "x"}, status="processing")


def _ended(prediction_id):
    return Prediction.objects.filter(pk=prediction_id).values_list("status", flat=True).get() in Prediction.TERMINAL


def _ended_of(prediction_ids):
    try:
        return set(
            Prediction.objects.filter(pk__in=prediction_ids, status__in=Prediction.TERMINAL).values_list(
                "pk", flat=True
            )
        )
    finally:
        # On asyncio.run's executor threads, which end with the test (as its database).
        connections.close_all()


def _seconds_to_see_it_end(prediction_id):
    """Wait (up to 30 s) for the prediction, which another thread ends 0.3 s in."""

    def end():
        time.sleep(0.3)
        try:
            predictions.fail(Prediction.objects.get(pk=prediction_id), "Ended by the test")
        finally:
            connections.close_all()

    ender = threading.Thread(target=end)
    ender.start()
    started = time.monotonic()
    asyncio.run(waits.wait(prediction_id, 30, _ended_of))
    ender.join()
    return time.monotonic() - started


@pytest.mark.skipif(connection.vendor != "postgresql", reason="NOTIFY is PostgreSQL's; elsewhere waiting polls")
def test_a_notice_wakes_the_wait(running, monkeypatch):
    # Looking at the row only once a minute: only the notice can end this wait soon.
    monkeypatch.setattr(waits, "LISTENED_POLL", 60)
    warm_up = waits.LISTENER.subscribe("warm-up", threading.Event())
    deadline = time.monotonic() + 10
    while not waits.LISTENER.heard_everything_since(time.monotonic()) and time.monotonic() < deadline:
        time.sleep(0.01)
    waits.LISTENER.unsubscribe("warm-up", warm_up)
    seconds = _seconds_to_see_it_end(running.pk)
    assert _ended(running.pk)
    assert seconds < 10


def test_without_notices_the_row_still_ends_the_wait(running, monkeypatch, settings):
    # As on SQLite, with LIGHTBOX_WAIT_NOTIFY off, or while the listener is down.
    settings.WAIT_NOTIFY = False
    monkeypatch.setattr(waits.LISTENER, "heard_everything_since", lambda moment: False)
    seconds = _seconds_to_see_it_end(running.pk)
    assert _ended(running.pk)
    assert seconds < 10


def test_a_lost_notice_is_made_up_for_by_the_sweep(running, monkeypatch):
    # Notices "flow", but this one never arrives: the loop's sweep of the rows ends the wait.
    monkeypatch.setattr(waits, "LISTENED_POLL", 0.2)
    monkeypatch.setattr(waits.LISTENER, "heard_everything_since", lambda moment: True)
    monkeypatch.setattr(waits.LISTENER, "_wake", lambda prediction_id: None)
    seconds = _seconds_to_see_it_end(running.pk)
    assert _ended(running.pk)
    assert seconds < 5


def test_the_wait_gives_up_after_its_seconds(running):
    started = time.monotonic()
    assert asyncio.run(waits.wait(running.pk, 0.3, _ended_of)) is False
    assert 0.3 <= time.monotonic() - started < 5
    assert not _ended(running.pk)


def test_many_waits_look_at_their_rows_together(running, monkeypatch, settings):
    settings.WAIT_NOTIFY = False
    monkeypatch.setattr(waits.LISTENER, "heard_everything_since", lambda moment: False)
    rounds = []

    def ended(prediction_ids):
        rounds.append(prediction_ids)
        return _ended_of(prediction_ids)

    async def fifty_waits():
        return await asyncio.gather(*(waits.wait(running.pk, 0.5, ended) for _ in range(50)))

    assert asyncio.run(fifty_waits()) == [False] * 50
    # Each looked ~10 times in its 0.5 s: one query answered the looks of all fifty.
    assert len(rounds) < 20


def test_waiting_requests_hold_no_web_thread(alice_token, queued):
    """More `Prefer: wait` creates than the web server has threads: other
    requests are still answered at once, and every wait ends with its prediction."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    from tests.conftest import COG_PREDICTOR_DIR, WebServer, wait_until

    schema = json.loads((COG_PREDICTOR_DIR / ".cog" / "openapi_schema.json").read_text())
    # Never dispatched (queued), so it runs until the test ends it.
    version = catalog.add_version("local", "slow", "cog", "http://127.0.0.1:9", schema)
    version.set_availability(True)
    ReconcilerState.beat_ran()  # /healthz answers 200 only while beat keeps its schedule
    server = WebServer(threads=2).start()
    headers = {"Authorization": f"Bearer {alice_token}"}
    try:
        with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client, ThreadPoolExecutor(6) as pool:
            waiting = [
                pool.submit(
                    client.post,
                    "/v1/predictions",
                    json={"version": version.pk, "input": {"prompt": "x"}},
                    headers={"Prefer": "wait=25"},
                )
                for _ in range(6)
            ]
            wait_until(lambda: len(queued) == 6, timeout=15, message="six predictions created")
            time.sleep(0.3)  # the six are waiting now
            started = time.monotonic()
            assert client.get("/healthz").status_code == 200
            assert client.get(f"/v1/predictions/{queued[0]}").json()["status"] == "starting"
            assert time.monotonic() - started < 2
            assert not any(future.done() for future in waiting)

            for prediction_id in queued:
                predictions.fail(Prediction.objects.get(pk=prediction_id), "Ended by the test")
            responses = [future.result(timeout=15) for future in waiting]
    finally:
        server.stop()
    assert [response.status_code for response in responses] == [201] * 6
    assert {response.json()["status"] for response in responses} == {"failed"}


def test_asking_which_of_no_predictions_ended_is_no_query_error(running):
    # The sweep asks with the ids of the waiters left; when they have all gone,
    # `WHERE id IN ()` used to fail and log a warning on every sweep.
    from app.views import api

    assert api._ended([]) == set()
    assert api._ended([running.id]) == set()
    Prediction.objects.filter(pk=running.id).update(status="succeeded")
    assert api._ended([running.id]) == {running.id}
