"""Webhooks Lightbox sends to API callers: signed as Replicate signs them."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from standardwebhooks.webhooks import Webhook

from tests.conftest import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


class Receiver:
    def __init__(self, fail_first=0):
        self.calls = []
        self.fail_first = fail_first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.calls.append((dict(self.headers), body))
                failing = len(receiver.calls) <= receiver.fail_first
                self.send_response(500 if failing else 200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def payloads(self):
        return [json.loads(body) for _, body in self.calls]


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.server.shutdown()


def test_completed_webhook_is_signed_with_the_users_secret(worker, cog_version, api, receiver):
    secret = api.get("/v1/webhooks/default/secret").json()["key"]
    response = api.post(
        "/v1/predictions",
        json={
            "version": cog_version.id,
            "input": {"prompt": "hook"},
            "webhook": receiver.url,
            "webhook_events_filter": ["completed"],
        },
    )
    assert response.status_code == 201

    wait_until(lambda: receiver.calls, message="the completed webhook")
    headers, body = receiver.calls[0]
    verified = Webhook(secret).verify(body, {k.lower(): v for k, v in headers.items()})
    assert verified["id"] == response.json()["id"]
    assert verified["status"] == "succeeded"
    assert verified["output"][0].startswith("http")
    assert len(receiver.calls) == 1  # only "completed" was asked for


def test_all_events_arrive_in_order_and_end_with_completed(worker, cog_version, api, receiver):
    api.post(
        "/v1/predictions",
        json={"version": cog_version.id, "input": {"prompt": "events", "step_delay": 0.3}, "webhook": receiver.url},
    )

    wait_until(lambda: any(p["status"] == "succeeded" for p in receiver.payloads()), message="completion")
    statuses = [p["status"] for p in receiver.payloads()]
    assert statuses[0] == "processing"
    assert statuses[-1] == "succeeded"
    assert statuses.count("succeeded") == 1


def test_a_failing_receiver_gets_the_completed_webhook_again(worker, cog_version, api):
    receiver = Receiver(fail_first=1)
    try:
        api.post(
            "/v1/predictions",
            json={
                "version": cog_version.id,
                "input": {"prompt": "retry"},
                "webhook": receiver.url,
                "webhook_events_filter": ["completed"],
            },
        )
        wait_until(lambda: len(receiver.calls) >= 2, timeout=20, message="the retried webhook")
        assert receiver.payloads()[0] == receiver.payloads()[1]
    finally:
        receiver.server.shutdown()


def test_an_event_queued_before_the_end_is_not_sent_after_it(alice, receiver):
    """A logs or output webhook still in the queue when the prediction ended
    would carry the final state: only the completed one does, once."""
    from app.models import Prediction
    from app.services import catalog
    from tasks.predictions import send_webhook

    version = catalog.add_version("local", "hooks", "cog", "http://127.0.0.1:9", {}, "0.23.1")
    prediction = Prediction.objects.create(
        version=version, owner=alice, input={"prompt": "x"}, status="processing", webhook=receiver.url
    )
    send_webhook.apply(args=[prediction.id, "logs"])
    # Ended (by a plain UPDATE: fail() would queue its own completed webhook).
    Prediction.objects.filter(pk=prediction.pk).update(status="failed", error="The model crashed")
    send_webhook.apply(args=[prediction.id, "output"])
    send_webhook.apply(args=[prediction.id, "completed"])

    assert [p["status"] for p in receiver.payloads()] == ["processing", "failed"]
