"""A create whose row was saved always tells the client its prediction (issue 11,
item 4): a `Prefer: wait` whose wait fails still answers 201 with the
prediction, and an `Idempotency-Key` makes a retried create answer the
prediction the first one started instead of running it twice."""

import json
import signal
import threading
import time
from datetime import timedelta

import httpx
import pytest
import replicate
from django.db import OperationalError
from django.utils import timezone

from app.models import IdempotencyKey, Prediction
from app.services import catalog, limits
from app.views import api as api_views
from tasks.reconciler import reconcile
from tests.conftest import COG_PREDICTOR_DIR, Gunicorn, free_port, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

SCHEMA = json.loads((COG_PREDICTOR_DIR / ".cog" / "openapi_schema.json").read_text())


@pytest.fixture
def version(transactional_db):
    """A version reported available whose predictions are never sent (`queued`)."""
    version = catalog.add_version("local", "keyed", "cog", f"http://127.0.0.1:{free_port()}", SCHEMA, "0.23.1")
    version.set_availability(True)
    type(version).objects.filter(pk=version.pk).update(checked_at=timezone.now() + timedelta(days=1))
    return version


@pytest.fixture
def client(site, alice_token):
    """The official client, sending one Idempotency-Key with every request."""

    def make(key, token=alice_token):
        return replicate.Client(api_token=token, base_url=site.url, headers={"Idempotency-Key": key})

    return make


def _create(api, version, key=None, prompt="a fox", path="/v1/predictions", **headers):
    body = (
        {"input": {"prompt": prompt}}
        if path != "/v1/predictions"
        else {"version": version.pk, "input": {"prompt": prompt}}
    )
    if key is not None:
        headers["Idempotency-Key"] = key
    return api.post(path, json=body, headers=headers)


def _assert_problem(response, status):
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status and problem["title"] and problem["detail"]
    return problem


# --- The wait fails after the row is saved ---------------------------------------------


async def _failing_wait(prediction_id, seconds, ended):
    raise OperationalError("server closed the connection unexpectedly")


def test_a_wait_that_fails_still_answers_201_with_the_saved_prediction(api, version, queued, monkeypatch):
    monkeypatch.setattr(api_views.waits, "wait", _failing_wait)

    response = api.post(
        "/v1/predictions", json={"version": version.pk, "input": {"prompt": "a fox"}}, headers={"Prefer": "wait"}
    )

    assert response.status_code == 201
    body = response.json()
    prediction = Prediction.objects.get()
    assert body["id"] == prediction.pk and queued == [prediction.pk]
    assert body["status"] == "starting"  # Replicate's clients poll it from here
    assert response.headers["Location"] == body["urls"]["get"]


def test_a_wait_whose_every_look_at_the_row_fails_still_answers_201(api, version, queued, monkeypatch):
    def down(*args):
        raise OperationalError("the database system is starting up")

    monkeypatch.setattr(api_views.waits, "wait", _failing_wait)
    monkeypatch.setattr(api_views, "_waited_json", down)

    response = api.post(
        f"/v1/models/{version.model}/predictions", json={"input": {"prompt": "a fox"}}, headers={"Prefer": "wait=5"}
    )

    assert response.status_code == 201
    assert response.json()["id"] == Prediction.objects.get().pk
    assert response.json()["input"]["prompt"] == "a fox"


def test_the_official_client_learns_the_id_when_the_wait_fails(client, version, queued, monkeypatch):
    monkeypatch.setattr(api_views.waits, "wait", _failing_wait)

    created = client("wait-fails").predictions.create(version=version.pk, input={"prompt": "a fox"}, wait=True)

    assert created.id == Prediction.objects.get().pk
    assert created.status == "starting"


def test_a_web_worker_told_to_stop_answers_its_waiting_creates_first(worker_env, alice_token, version):
    # A deploy or a restart: gunicorn TERMs its workers, which finish their
    # open responses within the grace period (30 s), then are killed.
    server = Gunicorn(worker_env).start()
    answer = {}

    def create():
        try:
            response = httpx.post(
                f"{server.url}/v1/predictions",
                json={"version": version.pk, "input": {"prompt": "a fox"}},
                headers={"Authorization": f"Bearer {alice_token}", "Prefer": "wait=60"},
                timeout=60,
            )
            answer.update(status=response.status_code, body=response.json())
        except (httpx.HTTPError, ValueError) as exc:
            answer.update(error=repr(exc))

    waiting = threading.Thread(target=create)
    try:
        waiting.start()
        wait_until(Prediction.objects.exists, timeout=30, message="the waiting create's prediction")
        time.sleep(0.5)  # its response has begun: the 201 went out, the body waits
        stopping = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        waiting.join(60)
        seconds = time.monotonic() - stopping
    finally:
        server.stop()
    assert answer.get("status") == 201, answer
    assert answer["body"]["id"] == Prediction.objects.get().pk
    assert answer["body"]["status"] == "starting"
    assert seconds < 10


# --- Idempotency-Key ---------------------------------------------------------------------


def test_a_retry_with_the_same_key_and_body_answers_the_same_prediction(client, version, queued):
    first = client("retry-1").predictions.create(version=version.pk, input={"prompt": "a fox"})
    again = client("retry-1").predictions.create(version=version.pk, input={"prompt": "a fox"})

    assert again.id == first.id
    assert Prediction.objects.count() == 1 and queued == [first.id]
    assert IdempotencyKey.objects.get().prediction_id == first.id


def test_a_client_whose_web_worker_was_killed_retries_without_running_it_twice(worker_env, alice_token, version):
    # The issue's ghost: the row is saved, the worker dies mid-wait (SIGKILL,
    # out of memory), the client never learns the id and sends the create again.
    body = {"version": version.pk, "input": {"prompt": "a fox"}}
    headers = {"Authorization": f"Bearer {alice_token}", "Prefer": "wait=60", "Idempotency-Key": "ghost"}
    server = Gunicorn(worker_env).start()
    lost = {}

    def create():
        try:
            lost["answer"] = httpx.post(f"{server.url}/v1/predictions", json=body, headers=headers, timeout=60).json()
        except (httpx.HTTPError, ValueError) as exc:
            lost["error"] = exc

    waiting = threading.Thread(target=create)
    try:
        waiting.start()
        wait_until(Prediction.objects.exists, timeout=30, message="the first create's prediction")
        server.kill()
        waiting.join(30)
    finally:
        server.stop()
    assert "error" in lost  # the first answer never arrived
    retry_headers = {name: value for name, value in headers.items() if name != "Prefer"}
    restarted = Gunicorn(worker_env).start()
    try:
        retried = httpx.post(f"{restarted.url}/v1/predictions", json=body, headers=retry_headers, timeout=30)
    finally:
        restarted.stop()

    assert retried.status_code == 201
    assert retried.headers["Idempotent-Replayed"] == "true"
    assert retried.json()["id"] == Prediction.objects.get().pk


def test_a_retry_by_model_answers_the_same_prediction(client, version, queued):
    first = client("by-model").models.predictions.create(model=str(version.model), input={"prompt": "a fox"})
    again = client("by-model").models.predictions.create(model=str(version.model), input={"prompt": "a fox"})

    assert again.id == first.id
    assert Prediction.objects.count() == 1


def test_a_replay_is_201_marked_replayed_and_shows_the_current_state(api, version, queued):
    first = _create(api, version, key="state")
    Prediction.objects.filter(pk=first.json()["id"]).update(status="processing")
    again = _create(api, version, key="state")

    assert first.status_code == again.status_code == 201
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["status"] == "processing"
    assert again.headers["Location"] == first.headers["Location"]


def test_a_replay_with_prefer_wait_waits_for_the_same_prediction(api, version, queued, monkeypatch):
    first = _create(api, version, key="waited")
    Prediction.objects.filter(pk=first.json()["id"]).update(status="failed", error="it broke")

    again = _create(api, version, key="waited", Prefer="wait=5")

    assert again.status_code == 201
    assert again.json()["id"] == first.json()["id"] and again.json()["status"] == "failed"


def test_the_key_quoted_as_the_draft_writes_it_is_the_same_key(api, version, queued):
    first = _create(api, version, key="8e03978e-40d5-43e8-bc93-6894a57f9324")
    again = _create(api, version, key='"8e03978e-40d5-43e8-bc93-6894a57f9324"')

    assert again.json()["id"] == first.json()["id"]


def test_the_same_key_with_another_body_is_a_conflict_and_starts_nothing(api, version, queued):
    first = _create(api, version, key="conflict", prompt="a fox")
    other = _create(api, version, key="conflict", prompt="a hen")

    problem = _assert_problem(other, 409)
    assert "conflict" in problem["detail"] and "different request" in problem["detail"]
    assert list(Prediction.objects.values_list("pk", flat=True)) == [first.json()["id"]]
    assert queued == [first.json()["id"]]


def test_the_same_key_on_the_other_create_endpoint_is_a_conflict(api, version, queued):
    _create(api, version, key="endpoint")
    other = _create(api, version, key="endpoint", path=f"/v1/models/{version.model}/predictions")

    _assert_problem(other, 409)
    assert Prediction.objects.count() == 1


def test_the_official_client_raises_the_conflict(client, version, queued):
    client("conflict-client").predictions.create(version=version.pk, input={"prompt": "a fox"})

    with pytest.raises(replicate.exceptions.ReplicateError) as caught:
        client("conflict-client").predictions.create(version=version.pk, input={"prompt": "a hen"})

    assert caught.value.status == 409
    assert Prediction.objects.count() == 1


def test_keys_are_per_user(site, api, version, queued, bob):
    from app.models import ApiToken

    _, bob_token = ApiToken.issue(bob)
    mine = _create(api, version, key="shared-key")
    theirs = httpx.post(
        f"{site.url}/v1/predictions",
        json={"version": version.pk, "input": {"prompt": "a fox"}},
        headers={"Authorization": f"Bearer {bob_token}", "Idempotency-Key": "shared-key"},
    )

    assert theirs.status_code == 201
    assert theirs.json()["id"] != mine.json()["id"]
    assert Prediction.objects.get(pk=theirs.json()["id"]).owner == bob


def test_without_a_key_every_create_starts_a_prediction(api, version, queued):
    first, again = _create(api, version), _create(api, version)

    assert first.json()["id"] != again.json()["id"]
    assert not IdempotencyKey.objects.exists()


@pytest.mark.parametrize(
    "key",
    ["", "x" * 256, "with space", 'quote"inside', "back\\slash", "caf\u00e9", '"unbalanced', "tab\tkey"],
    ids=["empty", "too-long", "space", "quote", "backslash", "not-ascii", "unbalanced-quote", "tab"],
)
def test_a_bad_key_is_refused_and_nothing_starts(site, alice_token, version, queued, key):
    response = httpx.post(
        f"{site.url}/v1/predictions",
        json={"version": version.pk, "input": {"prompt": "a fox"}},
        headers=[("Authorization", f"Bearer {alice_token}"), ("Idempotency-Key", key.encode("latin-1"))],
    )

    problem = _assert_problem(response, 400)
    assert "Idempotency-Key" in problem["detail"]
    assert not Prediction.objects.exists() and not queued


def test_the_longest_key_is_accepted(api, version, queued):
    key = "k" * 255
    assert _create(api, version, key=key).status_code == 201
    assert IdempotencyKey.objects.get().key == key


def test_concurrent_duplicates_start_exactly_one_prediction(api, site, alice_token, version, queued, monkeypatch):
    # Both requests pass the look for an earlier key before either saves: only
    # the unique constraint can stop the second.
    both_inside = threading.Barrier(2)
    admit = limits.admit

    def admit_together(owner, versions, **options):
        try:
            both_inside.wait(timeout=5)
        except threading.BrokenBarrierError:  # SQLite: the first holds the only write transaction
            pass
        return admit(owner, versions, **options)

    monkeypatch.setattr(limits, "admit", admit_together)
    answers = [None, None]

    def create(index):
        with httpx.Client(base_url=site.url, headers={"Authorization": f"Bearer {alice_token}"}, timeout=30) as c:
            answers[index] = c.post(
                "/v1/predictions",
                json={"version": version.pk, "input": {"prompt": "a fox"}},
                headers={"Idempotency-Key": "race"},
            )

    threads = [threading.Thread(target=create, args=[i]) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert [answer.status_code for answer in answers] == [201, 201]
    assert answers[0].json()["id"] == answers[1].json()["id"]
    assert Prediction.objects.count() == 1 and len(queued) == 1
    assert sorted(answer.headers.get("Idempotent-Replayed", "") for answer in answers) == ["", "true"]


def test_an_expired_key_starts_a_new_prediction(api, version, queued):
    first = _create(api, version, key="yesterday", prompt="a fox")
    IdempotencyKey.objects.update(created_at=timezone.now() - IdempotencyKey.TTL - timedelta(minutes=1))

    again = _create(api, version, key="yesterday", prompt="a hen")

    assert again.status_code == 201 and again.json()["id"] != first.json()["id"]
    assert IdempotencyKey.objects.get().prediction_id == again.json()["id"]


def test_the_reconciler_sweeps_expired_keys(api, version, queued):
    _create(api, version, key="old")
    _create(api, version, key="new")
    IdempotencyKey.objects.filter(key="old").update(
        created_at=timezone.now() - IdempotencyKey.TTL - timedelta(seconds=1)
    )

    reconcile()

    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["new"]
    assert Prediction.objects.count() == 2  # only the keys go


def test_the_openapi_document_describes_the_key(api):
    document = api.get("/v1/openapi.json").json()

    assert document["components"]["parameters"]["idempotency_key"]["name"] == "Idempotency-Key"
    for path in ("/v1/predictions", "/v1/models/{model_owner}/{model_name}/predictions"):
        operation = document["paths"][path]["post"]
        assert {"$ref": "#/components/parameters/idempotency_key"} in operation["parameters"]
        assert "409" in operation["responses"]
        assert "Idempotent-Replayed" in operation["responses"]["201"]["headers"]
