"""/healthz: a status for anyone (load balancers), the details (database,
broker, each backend and why it is down) only for staff or the health token."""

import pytest
from django.test import Client

from app.models import ApiToken, ReconcilerState
from lightbox.celery import app as celery_app
from tests.moderation.conftest import login

pytestmark = pytest.mark.django_db(transaction=True)

INTERNAL = "http://10.1.2.3:5000"
HEALTH_TOKEN = "health-" + "h" * 40


@pytest.fixture
def down(version):
    ReconcilerState.beat_ran()  # beat keeps its schedule: only a backend is down
    version.set_availability(False, f"The model server at {INTERNAL} could not connect (Connection refused).")
    return version


def _health(client=None, **headers):
    response = (client or Client()).get("/healthz", headers=headers)
    return response.status_code, response.json()


def test_anonymous_visitors_get_the_status_only(down):
    status, body = _health()

    assert (status, body) == (200, {"status": "ok"})


def test_staff_and_the_health_token_get_the_details(settings, down, staff):
    settings.HEALTH_TOKEN = HEALTH_TOKEN

    for client, headers in [(login(Client(), staff), {}), (Client(), {"Authorization": f"Bearer {HEALTH_TOKEN}"})]:
        status, body = _health(client, **headers)
        assert status == 200
        assert body["database"] == "ok" and body["broker"] == "ok"
        assert INTERNAL in body["versions"][str(down)]["reason"]


def test_users_wrong_tokens_and_api_tokens_get_the_status_only(settings, down, alice, staff):
    settings.HEALTH_TOKEN = HEALTH_TOKEN
    attempts = [
        (login(Client(), alice), {}),
        (Client(), {"Authorization": "Bearer wrong"}),
        (Client(), {"Authorization": f"Bearer {HEALTH_TOKEN[:-1]}"}),
        (Client(), {"Authorization": f"Bearer {ApiToken.issue(staff)[1]}"}),  # a token for /v1, not for this
    ]
    for client, headers in attempts:
        assert _health(client, **headers) == (200, {"status": "ok"})


def test_without_a_health_token_set_no_bearer_token_gets_details(settings, down):
    settings.HEALTH_TOKEN = ""

    assert _health(Authorization="Bearer ") == (200, {"status": "ok"})
    assert _health(Authorization="Bearer") == (200, {"status": "ok"})


def test_a_failing_check_answers_503_and_only_staff_learn_why(monkeypatch, down, staff):
    def unreachable():
        raise ConnectionError("Error 111 connecting to 10.9.9.9:6379. Connection refused.")

    monkeypatch.setattr(celery_app, "connection_for_write", unreachable)

    assert _health() == (503, {"status": "failing"})
    status, body = _health(login(Client(), staff))
    assert status == 503 and "10.9.9.9:6379" in body["broker"]
