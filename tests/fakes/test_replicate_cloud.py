"""The fake Replicate answers as Replicate's documented API and the official client expect."""

import io
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import replicate
import standardwebhooks
from PIL import Image
from replicate.webhook import Webhooks, WebhookSigningSecret

from .replicate_cloud import CATALOG_PATH, NSFW_ERROR, Behavior, FakeReplicate

SDXL = "7762fd07cf82c948538e41f63f77d685e02b063e37e496e96eefd46c929f9bdc"
SD21 = "ac732df83cea7fff18b8472768c88ad041fa750ff7682a21affe81863cbe77e4"
SD15 = "b3d14e1cd1f9470bbb0bb68cac48e5f483e5be309551992cc33dc30654a82bb7"
SDXL_TURBO = "6244ebc4d96ffcc48fa1270d22a1f014addf79c41732fe205fb1ff638c409267"
SMALL = {"prompt": "a lighthouse at dusk", "width": 64, "height": 64, "seed": 7}


@pytest.fixture
def fake():
    with FakeReplicate(webhook_retry_delays=(0.05, 0.05)) as server:
        server.default_behavior = Behavior(starting_delay=0.01, duration=0.05)
        yield server


@pytest.fixture
def client(fake):
    client = replicate.Client(api_token=fake.token, base_url=fake.url)
    client.poll_interval = 0.05
    return client


@pytest.fixture
def api(fake):
    with httpx.Client(base_url=fake.api_url, headers={"Authorization": f"Bearer {fake.token}"}, timeout=10) as http:
        yield http


class Receiver:
    """A webhook endpoint that records what it gets and answers with scripted statuses."""

    def __init__(self):
        self.received, self.statuses = [], []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = receiver.statuses.pop(0) if receiver.statuses else 204
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/replicate"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def bodies(self):
        return [json.loads(body) for _, body in self.received]


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


def image_size(url):
    return Image.open(io.BytesIO(httpx.get(url).content)).size


# --- the official client ---


def test_client_run_returns_images_of_the_requested_size(fake, client):
    output = client.run(f"stability-ai/sdxl:{SDXL}", input={**SMALL, "height": 48, "num_outputs": 2})

    assert len(output) == 2
    assert all(image_size(url) == (64, 48) for url in output)
    create, version = fake.requests[0], fake.requests[1]
    assert (create.method, create.path, create.headers["prefer"]) == ("POST", "/v1/predictions", "wait")
    assert create.json == {"version": SDXL, "input": {**SMALL, "height": 48, "num_outputs": 2}}
    assert version.path == f"/v1/models/stability-ai/sdxl/versions/{SDXL}"


def test_client_takes_the_base_url_and_token_from_the_environment(fake, monkeypatch):
    monkeypatch.setenv("REPLICATE_BASE_URL", fake.url)  # no /v1: the client adds it
    monkeypatch.setenv("REPLICATE_API_TOKEN", fake.token)
    prediction = replicate.Client().predictions.create(version=SD15, input=SMALL)
    assert fake.requests[-1].headers["authorization"] == f"Bearer {fake.token}"
    assert fake.requests[-1].headers["user-agent"].startswith("replicate-python/")
    assert prediction.version == SD15


def test_client_create_get_list_and_cancel(fake, client):
    fake.page_size = 2
    first = client.predictions.create(version=SD21, input={"prompt": "one", "width": 64, "height": 64})
    assert first.status == "starting"
    assert first.urls == {
        "get": f"{fake.api_url}/predictions/{first.id}",
        "cancel": f"{fake.api_url}/predictions/{first.id}/cancel",
        "web": f"{fake.url}/p/{first.id}",
    }
    first.wait()
    assert first.status == "succeeded" and first.progress.current == first.progress.total == 50
    assert set(first.metrics) == {"predict_time", "total_time"}
    ids = [client.predictions.create(version=SD15, input={"prompt": str(i)}).id for i in range(3)]

    page1 = client.predictions.list()
    page2 = client.predictions.list(page1.next)
    assert [p.id for p in page1] + [p.id for p in page2] == ids[::-1] + [first.id]
    assert page1.next.startswith(fake.api_url + "/predictions?cursor=") and page1.previous is None
    assert page2.next is None and [p.id for p in client.predictions.list(page2.previous)] == ids[:0:-1]
    assert client.predictions.get(ids[0]).model == "stability-ai/stable-diffusion"

    client.predictions.cancel(ids[2])
    assert client.predictions.get(ids[2]).status in ("canceled", "succeeded")


def test_client_reads_models_and_versions_from_the_catalog(client):
    catalog = json.loads(CATALOG_PATH.read_text())
    sd = client.models.get("stability-ai/stable-diffusion")
    assert sd.latest_version.id == SD21 and sd.visibility == "public"
    assert {v.id for v in sd.versions.list()} == {SD21, SD15}
    version = client.models.get("stability-ai/sdxl").versions.get(SDXL)
    entry = next(e for e in catalog if e["version_id"] == SDXL)
    assert version.openapi_schema == entry["openapi_schema"] and version.cog_version == entry["cog_version"]
    assert client.webhooks.default.secret().key.startswith("whsec_")


def test_catalog_holds_the_guides_models_that_replicate_hosts():
    # SD Turbo has no model on Replicate we could confirm; it runs locally only.
    catalog = json.loads(CATALOG_PATH.read_text())
    names = [f"{e['owner']}/{e['name']}" for e in catalog]
    assert names == [
        "stability-ai/sdxl",
        "stability-ai/stable-diffusion",
        "stability-ai/stable-diffusion",
        "fofr/sdxl-turbo",
    ]
    for entry in catalog:
        assert set(entry) == {
            "owner",
            "name",
            "description",
            "version_id",
            "cog_version",
            "openapi_schema",
            "created_at",
        }
        assert re.fullmatch(r"[0-9a-f]{64}", entry["version_id"])
        assert {"Input", "Output"} <= set(entry["openapi_schema"]["components"]["schemas"])


# --- prediction lifecycle ---


def test_prefer_wait_returns_the_finished_prediction(fake, api):
    response = api.post("/predictions", headers={"Prefer": "wait=5"}, json={"version": SD15, "input": SMALL})
    body = response.json()
    assert response.status_code == 201 and response.headers["Location"] == body["urls"]["get"]
    assert body["output"] and body["status"] in ("processing", "succeeded")
    assert list(body) == [
        "id",
        "model",
        "version",
        "input",
        "logs",
        "output",
        "data_removed",
        "error",
        "status",
        "created_at",
        "started_at",
        "completed_at",
        "source",
        "metrics",
        "urls",
    ]


def test_prefer_wait_gives_up_after_n_seconds(fake, api):
    fake.script(hold="processing")
    started = time.monotonic()
    response = api.post("/predictions", headers={"Prefer": "wait=1"}, json={"version": SD15, "input": {}})
    assert 1 <= time.monotonic() - started < 3
    assert response.status_code == 202 and response.json()["status"] == "processing"
    assert response.json()["output"] is None and "1/50" in response.json()["logs"]


@pytest.mark.parametrize("stage", ["starting", "processing"])
def test_cancel_works_at_every_stage(fake, api, stage):
    fake.script(hold=stage)
    pid = api.post("/predictions", json={"version": SD15, "input": {}}).json()["id"]
    fake.wait_for_status(pid, stage)
    canceled = api.post(f"/predictions/{pid}/cancel").json()
    assert canceled["status"] == "canceled" and canceled["completed_at"] and canceled["output"] is None
    fake.release(pid)
    time.sleep(0.1)
    assert api.get(f"/predictions/{pid}").json()["status"] == "canceled"


def test_cancel_of_a_finished_prediction_changes_nothing(fake, api):
    pid = api.post("/predictions", json={"version": SD15, "input": SMALL}).json()["id"]
    done = fake.wait_for_status(pid, "succeeded")
    assert api.post(f"/predictions/{pid}/cancel").json() == done
    assert api.post("/predictions/nope/cancel").status_code == 404


def test_outputs_expire_and_data_is_removed(fake, api):
    # The TTLs count on the fake's clock, moved here by hand: on a busy
    # machine the first download could otherwise come after 0.3 s of real time.
    now = [1000.0]
    fake.clock = lambda: now[0]
    fake.file_ttl, fake.data_ttl = 0.3, 0.6
    pid = api.post("/predictions", json={"version": SDXL, "input": SMALL}).json()["id"]
    url = fake.wait_for_status(pid, "succeeded")["output"][0]
    assert httpx.get(url).status_code == 200
    now[0] += 0.35
    assert httpx.get(url).status_code == 404
    body = api.get(f"/predictions/{pid}").json()
    assert body["data_removed"] is False and body["output"] == [url]  # the file is gone, not the data yet
    now[0] += 0.3
    body = api.get(f"/predictions/{pid}").json()
    assert body["data_removed"] is True and body["output"] is None and body["status"] == "succeeded"


def test_images_are_deterministic_for_prompt_and_seed(fake, api):
    def run(seed):
        pid = api.post("/predictions", json={"version": SDXL, "input": {**SMALL, "seed": seed}}).json()["id"]
        return httpx.get(fake.wait_for_status(pid)["output"][0]).content

    assert run(1) == run(1) != run(2)


def test_safety_and_model_failures(fake, api):
    fake.script(outcome="nsfw")
    fake.script(nsfw_outputs=(1,))
    fake.script(outcome="error", error="CUDA error: out of memory")
    nsfw, partial, broken = (
        api.post("/predictions", json={"version": SDXL, "input": {**SMALL, "num_outputs": 3}}).json()["id"]
        for _ in range(3)
    )
    turbo = api.post("/predictions", json={"version": SDXL_TURBO, "input": SMALL}).json()["id"]
    agreed = api.post(
        "/predictions", json={"version": SDXL_TURBO, "input": {**SMALL, "agree_to_research_only": True}}
    ).json()["id"]
    odd = api.post("/predictions", json={"version": SDXL, "input": {**SMALL, "width": 100}}).json()["id"]

    assert fake.wait_for_status(nsfw)["error"] == NSFW_ERROR
    assert fake.prediction_json(nsfw)["status"] == "failed"
    assert len(fake.wait_for_status(partial)["output"]) == 2
    assert fake.wait_for_status(broken)["error"] == "CUDA error: out of memory"
    assert "must agree" in fake.wait_for_status(turbo)["error"]
    assert fake.wait_for_status(agreed)["output"][0].endswith(".jpg")
    assert "divisible by 8" in fake.wait_for_status(odd)["error"]


# --- errors ---


def test_bad_token_gets_401_problem_json(fake):
    response = httpx.get(f"{fake.api_url}/predictions", headers={"Authorization": "Bearer wrong"})
    assert response.status_code == 401
    assert response.json() == {
        "title": "Unauthenticated",
        "status": 401,
        "detail": "You did not pass a valid authentication token",
    }


def test_invalid_versions_and_bodies_get_422(fake, api, client):
    assert (
        api.post("/predictions", json={"version": "0" * 64, "input": {}}).json()["title"]
        == "Invalid version or not permitted"
    )
    assert api.post("/predictions", json={"version": f"stability-ai/sdxl:{SD21}", "input": {}}).status_code == 422
    body = api.post("/predictions", json={"input": {}, "model": "stability-ai/sdxl"}).json()
    assert body["detail"] == "- version is required\n- Additional property model is not allowed\n"
    assert api.get("/predictions/doesnotexist").json() == {
        "detail": "The requested resource could not be found.",
        "status": 404,
    }
    with pytest.raises(replicate.exceptions.ReplicateError) as error:
        client.run("stability-ai/sdxl", input=SMALL)  # not an official model
    assert error.value.status == 422
    fake.official_models.add("stability-ai/sdxl")
    assert client.run("stability-ai/sdxl", input=SMALL)


def test_input_is_validated_against_the_version_schema(api):
    response = api.post(
        "/predictions",
        json={
            "version": SD15,
            "input": {
                "width": 100,
                "num_outputs": 5,
                "guidance_scale": 0,
                "seed": "x",
                "scheduler": "Euler",
                "colour": "red",
            },
        },
    )
    body = response.json()
    assert response.status_code == 422 and body["title"] == "Input validation failed"
    assert {(e["type"], e["field"]) for e in body["invalid_fields"]} == {
        ("enum", "input.width"),
        ("number_lte", "input.num_outputs"),
        ("number_gte", "input.guidance_scale"),
        ("invalid_type", "input.seed"),
        ("enum", "input.scheduler"),
    }
    assert "- input.num_outputs: Must be less than or equal to 4\n" in body["detail"]
    accepted = api.post("/predictions", json={"version": SD15, "input": {"colour": "red"}}).json()
    assert accepted["input"] == {"colour": "red"}  # unknown inputs are accepted and echoed


def test_faults_for_the_next_requests(fake, api):
    fake.fault("error", count=2, path="/v1/predictions")
    assert [api.get("/predictions").status_code for _ in range(3)] == [500, 500, 200]
    fake.fault("garbage")
    response = api.get("/predictions")
    assert response.status_code == 200 and not response.text.startswith("{")
    fake.fault("throttle", retry_after=2, method="POST")
    response = api.post("/predictions", json={"version": SD15, "input": {}})
    assert response.status_code == 429 and response.headers["Retry-After"] == "2"
    fake.fault("hang", seconds=2)
    with pytest.raises(httpx.TimeoutException):
        api.get("/predictions", timeout=0.2)


def test_control_api_scripts_a_fake_in_another_process(fake, api):
    httpx.post(f"{fake.url}/_fake/script", json={"outcome": "nsfw"})
    pid = api.post("/predictions", json={"version": SD15, "input": {}}).json()["id"]
    assert fake.wait_for_status(pid)["error"] == NSFW_ERROR


# --- webhooks ---


def test_webhooks_are_signed_with_the_default_secret(fake, api, receiver):
    pid = api.post("/predictions", json={"version": SD15, "input": SMALL, "webhook": receiver.url}).json()["id"]
    deliveries = fake.wait_for_webhooks(2)
    assert [d.event for d in deliveries] == ["output", "completed"]  # the documented default
    assert [b["status"] for b in receiver.bodies()] == ["processing", "succeeded"]
    secret = api.get("/webhooks/default/secret").json()["key"]
    for headers, body in receiver.received:
        assert standardwebhooks.Webhook(secret).verify(body, headers)["id"] == pid
        Webhooks.validate(headers=headers, body=body.decode(), secret=WebhookSigningSecret(key=secret))
        assert re.fullmatch(r"v1,[A-Za-z0-9+/=]+", headers["webhook-signature"])


def test_webhook_events_filter_and_log_throttling(fake, api, receiver):
    fake.script(duration=1.2, steps=60)
    api.post(
        "/predictions",
        json={
            "version": SD15,
            "input": SMALL,
            "webhook": receiver.url,
            "webhook_events_filter": ["start", "logs", "completed"],
        },
    )
    fake.wait_for_webhooks(1, event="completed", timeout=5)
    events = [d.event for d in fake.webhook_deliveries]
    assert events[0] == "start" and events[-1] == "completed" and "output" not in events
    assert 2 <= events.count("logs") <= 4  # at most one per 500 ms over 1.2 s


def test_only_the_completed_webhook_is_retried(fake, api, receiver):
    receiver.statuses = [500, 503, 500]  # output, completed (1st), completed (2nd)
    api.post("/predictions", json={"version": SD15, "input": SMALL, "webhook": receiver.url})
    deliveries = fake.wait_for_webhooks(3, event="completed")
    assert [d.status for d in deliveries] == [503, 500, 204]
    assert len({d.headers["webhook-id"] for d in deliveries}) == 1
    assert [d.status for d in fake.webhook_deliveries if d.event == "output"] == [500]


def test_duplicate_late_and_dropped_webhooks(fake, api, receiver):
    fake.script(duplicate_webhooks=True, late_processing_webhook=True)
    api.post(
        "/predictions",
        json={"version": SD15, "input": SMALL, "webhook": receiver.url, "webhook_events_filter": ["completed"]},
    )
    fake.wait_for_webhooks(3)
    time.sleep(0.05)
    assert [b["status"] for b in receiver.bodies()] == ["succeeded", "succeeded", "processing"]
    assert receiver.received[0][0]["webhook-id"] == receiver.received[1][0]["webhook-id"]

    fake.reset()
    fake.script(drop_completed_webhook=True)
    pid = api.post("/predictions", json={"version": SD15, "input": SMALL, "webhook": receiver.url}).json()["id"]
    fake.wait_for_status(pid)
    time.sleep(0.2)
    assert [d.event for d in fake.webhook_deliveries] == ["output"]
    fake.send_webhook(pid, "completed")
    assert fake.webhook_deliveries[-1].json["status"] == "succeeded"
