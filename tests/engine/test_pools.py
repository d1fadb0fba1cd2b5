"""A version served by a pool of real Cog servers: predictions spread over
the instances (one slot each), wait in the queue when all are busy, skip an
instance that is down, and go back to the queue when their instance dies
mid-run."""

import os
import signal
import time

import pytest
from django.test import Client

from app.models import Instance, Prediction
from app.services import catalog, pools, predictions
from tasks.reconciler import reconcile
from tests.conftest import COG_PREDICTOR_DIR, CogServer, free_port, wait_for_status, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

HEALTH_TOKEN = "health-" + "p" * 40


def _two_servers():
    """Two Cog servers of one pool; both upload as the pool's version (whose
    location is the first one's), as `make run` starts a local pool."""
    first = CogServer(COG_PREDICTOR_DIR)
    second = CogServer(COG_PREDICTOR_DIR)
    for server in (first, second):
        server.uploading(first.url).start()
    yield [first, second]
    for server in (first, second):
        server.stop()


@pytest.fixture(scope="module")
def servers(site):
    yield from _two_servers()


def _pool(urls, name="local/pooled"):
    version = catalog.import_version(urls[0], name)
    pools.set_instances(version, urls)
    catalog.refresh_availability(version, max_age=0)
    return version


@pytest.fixture
def pool(transactional_db, servers):
    return _pool([server.url for server in servers])


def _run(version, owner, count, seconds=1.0, **extra):
    return [
        predictions.start(
            version,
            {"prompt": f"pooled {index}", "num_inference_steps": 2, "step_delay": seconds / 2, **extra},
            owner=owner,
        )
        for index in range(count)
    ]


def _overlapping(a, b):
    return a.started_at < b.completed_at and b.started_at < a.completed_at


def test_predictions_spread_over_the_instances_and_run_side_by_side(worker, pool, alice):
    ids = [p.id for p in _run(pool, alice, 4)]

    done = [wait_for_status(pk, timeout=60) for pk in ids]

    assert [p.status for p in done] == ["succeeded"] * 4, [p.error for p in done]
    assert {p.instance.url for p in done} == {instance.url for instance in pool.instances.all()}
    # Four 1 s predictions on two servers: two at a time, not one after another.
    assert any(_overlapping(a, b) for a in done for b in done if a.instance_id != b.instance_id)
    assert all(p.outputs.count() == 1 for p in done)  # each server's uploads were taken
    assert not Instance.objects.filter(prediction__isnull=False).exists()  # every slot freed


def test_when_every_instance_is_busy_predictions_wait_and_none_fails(worker, pool, alice):
    ids = [p.id for p in _run(pool, alice, 5)]
    most_at_once = 0

    def all_ended():
        nonlocal most_at_once
        most_at_once = max(most_at_once, Instance.objects.filter(prediction__isnull=False).count())
        return not Prediction.objects.filter(pk__in=ids).active().exists()

    wait_until(all_ended, timeout=60, interval=0.05, message="five predictions on two instances")

    done = Prediction.objects.filter(pk__in=ids)
    assert sorted(p.status for p in done) == ["succeeded"] * 5, [p.error for p in done]
    assert most_at_once == 2  # one slot per instance, never more
    assert sorted(p.dispatch_attempts for p in done) == [1] * 5  # each handed over once


def test_an_instance_that_is_down_is_skipped_and_reported_in_healthz(worker, servers, alice, settings):
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    version = _pool([servers[0].url, dead, servers[1].url], name="local/partly-down")

    ids = [p.id for p in _run(version, alice, 3, seconds=0.4)]
    done = [wait_for_status(pk, timeout=60) for pk in ids]

    assert [p.status for p in done] == ["succeeded"] * 3, [p.error for p in done]
    assert dead not in {p.instance.url for p in done}
    settings.HEALTH_TOKEN = HEALTH_TOKEN
    body = Client().get("/healthz", headers={"Authorization": f"Bearer {HEALTH_TOKEN}"}).json()
    pool_health = body["versions"][str(version)]
    assert pool_health["available"] is True
    assert pool_health["instances"][dead]["up"] is False
    assert "could not connect" in pool_health["instances"][dead]["reason"]
    assert pool_health["instances"][servers[0].url] == {"up": True, "busy": False}


def test_a_pool_with_every_instance_down_fails_the_prediction_with_a_clear_error(worker, alice, transactional_db):
    urls = [f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"]
    version = catalog.add_version("local", "all-down", "cog", urls[0], {"components": {"schemas": {"Input": {}}}})
    pools.set_instances(version, urls)
    version.set_availability(True)  # as if it went down after the last health check
    prediction = Prediction.objects.create(version=version, owner=alice, input={"prompt": "x"})
    from tasks.predictions import run_prediction

    run_prediction.delay(prediction.id)

    prediction = wait_for_status(prediction.id, timeout=60)
    assert prediction.status == "failed"
    assert "No instance of the pool is up" in prediction.error


@pytest.fixture
def own_servers(site):
    """Two servers of a pool of this test's own: one is killed."""
    yield from _two_servers()


def test_a_prediction_whose_instance_dies_mid_run_goes_back_to_the_queue_and_succeeds(
    worker, own_servers, alice, stored_files
):
    version = _pool([server.url for server in own_servers], name="local/killable")
    [prediction] = _run(version, alice, 1, seconds=6.0)  # 2 steps of 3 s: quiet long enough
    prediction = wait_for_status(prediction.id, statuses=("processing",))
    killed = next(server for server in own_servers if server.url == prediction.instance.url)
    survivor = next(server for server in own_servers if server is not killed)

    os.killpg(killed.process.pid, signal.SIGKILL)  # no chance to report anything
    time.sleep(3.5)  # quiet past INSTANCE_QUIET
    reconcile()

    lost = Instance.objects.get(url=killed.url, version=version)
    assert lost.up is False and lost.down_reason
    prediction = wait_for_status(prediction.id, timeout=60)
    assert prediction.status == "succeeded", prediction.error
    assert prediction.instance.url == survivor.url
    assert prediction.dispatch_attempts == 2
    assert prediction.outputs.count() == 1
    stored_files.assert_intact(prediction)


def test_a_lost_instance_whose_prediction_had_finished_does_not_run_it_again(worker, pool, alice):
    [prediction] = _run(pool, alice, 1, seconds=0.2)
    running = wait_for_status(prediction.id, statuses=("processing",))
    instance = running.instance
    done = wait_for_status(prediction.id)  # its result arrived
    assert done.status == "succeeded"

    # The reconciler judged the instance lost from what it read before the result came.
    assert pools.requeue_lost(running, instance, "could not connect") is False

    time.sleep(1.0)
    again = Prediction.objects.get(pk=prediction.id)
    assert (again.status, again.dispatch_attempts, again.dispatched_at) == ("succeeded", 1, done.dispatched_at)
    instance.set_health("")
