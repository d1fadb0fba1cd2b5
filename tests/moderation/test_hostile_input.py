"""Hostile JSON and text (issue 9, item 6): nesting thousands deep, lone
UTF-16 surrogates, megabyte prompts, wrong types and data: URIs that call
an image something else. Each gets a 4xx naming what was wrong, never a
500, and never a prediction stuck in "starting"."""

import base64
import io
import json
from datetime import datetime, timezone

import pytest
from django.db import DataError, connection, transaction
from django.test import Client
from PIL import Image
from standardwebhooks.webhooks import Webhook

from app.core import payloads, uploads
from app.models import ApiToken, Comparison, Prediction
from app.services.backends import BackendError, cog, json_body, replicate
from tasks.predictions import run_prediction

from .conftest import login, png

pytestmark = pytest.mark.django_db(transaction=True)

DEEP_BODY = "[" * 5000 + "]" * 5000
DEEP_INPUT = "[" * 900 + "]" * 900


@pytest.fixture
def token(alice):
    return ApiToken.issue(alice)[1]


@pytest.fixture(autouse=True)
def no_waiting(settings):
    settings.PREFER_WAIT_MAX = 0


def _post(token, raw, path="/v1/predictions"):
    return Client().post(path, raw, content_type="application/json", headers={"Authorization": f"Bearer {token}"})


def _fields(response):
    return {entry["field"]: entry["description"] for entry in response.json().get("invalid_fields", [])}


# --- Nesting -------------------------------------------------------------------------


def test_a_body_nested_thousands_deep_is_a_400(version, token):
    for path in ("/v1/predictions", "/v1/models/local/idle-model/predictions"):
        response = _post(token, DEEP_BODY, path)
        assert response.status_code == 400, response.content[:300]
        assert response["Content-Type"] == "application/problem+json"
        assert "nested" in response.json()["detail"]


@pytest.mark.parametrize(
    "raw, deeper",
    [
        ("{}", False),
        ("[" * 32 + "]" * 32, False),
        ("[" * 33 + "]" * 33, True),
        ('{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\" [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}', False),
        ("[" + '[[1,{"b":[2]}]],' * 1000 + "[]]", False),
        ("[" * 20 + "[]," * 100 + "[" * 20 + "]" * 40, True),
        ('{"a":' * 40 + "1" + "}" * 40, True),
        ("[" * 5000, True),
        ("[[]", False),
    ],
)
def test_nesting_is_counted_before_parsing(raw, deeper):
    assert payloads.nested_deeper_than(raw.encode(), 32) is deeper


def test_an_input_nested_900_deep_is_refused_and_saves_nothing(version, token):
    raw = '{"version": "%s", "input": {"prompt": "x", "fail": %s}}' % (version.id, DEEP_INPUT)
    response = _post(token, raw)
    assert response.status_code == 400, response.content[:300]
    assert "nested" in response.json()["detail"]
    assert not Prediction.objects.exists()


def test_the_cog_webhook_refuses_deep_json(make_prediction):
    prediction = make_prediction()
    Prediction.objects.filter(pk=prediction.pk).update(status="processing")
    url = cog.webhook_url(prediction).split("://", 1)[1].split("/", 1)[1]
    response = Client().post(
        "/" + url, '{"status": "succeeded", "output": %s}' % DEEP_BODY, content_type="application/json"
    )
    assert response.status_code == 400
    assert Prediction.objects.get(pk=prediction.pk).status == "processing"


def test_the_replicate_webhook_refuses_deep_json(replicate_version, settings, make_prediction):
    settings.REPLICATE_WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"k" * 24).decode()
    replicate._webhook_secret.cache_clear()
    prediction = make_prediction(on=replicate_version)
    body = ('{"id": "r1", "status": "succeeded", "output": %s}' % DEEP_BODY).encode()
    now = datetime.now(tz=timezone.utc)
    signature = Webhook(settings.REPLICATE_WEBHOOK_SECRET).sign("msg_1", now, body.decode())
    response = Client().post(
        f"/hooks/replicate/{prediction.id}",
        body,
        content_type="application/json",
        headers={"webhook-id": "msg_1", "webhook-timestamp": str(int(now.timestamp())), "webhook-signature": signature},
    )
    replicate._webhook_secret.cache_clear()
    assert response.status_code == 400, response.content[:300]


def test_nan_and_infinity_are_not_json(version, token):
    for value in ("NaN", "Infinity", "-Infinity", "1e999"):
        raw = '{"version": "%s", "input": {"prompt": "x", "guidance_scale": %s}}' % (version.id, value)
        assert _post(token, raw).status_code in (400, 422), value
    assert not Prediction.objects.exists()


# --- webhook_events_filter -------------------------------------------------------------


@pytest.mark.parametrize("events", [[[1]], [1], [None], "start", {"start": 1}, ["start", "finish"], [{"a": 1}]])
def test_webhook_events_filter_must_be_a_list_of_event_names(version, token, events):
    body = {
        "version": version.id,
        "input": {"prompt": "x"},
        "webhook": "https://example.com/hook",
        "webhook_events_filter": events,
    }
    response = _post(token, json.dumps(body))
    assert response.status_code == 422, response.content[:300]
    assert "webhook_events_filter" in _fields(response)


# --- Text that is not valid Unicode ------------------------------------------------------


@pytest.mark.parametrize(
    "raw, field",
    [
        ('{"version": "%(v)s", "input": {"prompt": "a \\ud800 b"}}', "input.prompt"),
        ('{"version": "%(v)s", "input": {"prompt": "x", "negative_prompt": "\\udfff"}}', "input.negative_prompt"),
        ('{"version": "%(v)s", "input": {"prompt": "x", "\\ud800": "y"}}', "input"),
        ('{"version": "%(v)s\\ud800", "input": {"prompt": "x"}}', "version"),
        ('{"version": "%(v)s", "input": {"prompt": "x"}, "webhook": "https://example.com/\\ud800"}', "webhook"),
    ],
)
def test_a_lone_surrogate_anywhere_is_a_422_naming_the_field(version, token, raw, field):
    response = _post(token, raw % {"v": version.id})
    assert response.status_code == 422, response.content[:300]
    assert field in _fields(response), response.json()
    assert "Unicode" in _fields(response)[field]
    assert not Prediction.objects.exists()


@pytest.mark.parametrize(
    "path, raw, field",
    [
        ("/v1/grids", '{"versions": ["%(v)s"], "input": {"prompt": "a \\ud800"}, "axes": []}', "input.prompt"),
        ("/v1/comparisons", '{"versions": ["%(v)s"], "input": {"prompt": "a \\ud800"}}', "input.prompt"),
        ("/v1/benchmarks", '{"prompt_set": "geneval", "versions": ["%(v)s"], "title": "\\udfff"}', "title"),
        ("/v1/prompt-sets", '{"name": "x\\ud800", "prompts": [{"prompt": "p"}]}', "name"),
        ("/v1/models", '{"owner": "alice", "name": "m", "description": "\\ud800"}', "description"),
        ("/v1/deployments", '{"name": "d", "model": "alice/m", "\\ud800": 1}', "body"),
    ],
)
def test_every_json_body_refuses_a_lone_surrogate_with_a_422(version, token, path, raw, field):
    response = _post(token, raw % {"v": version.id}, path)
    assert response.status_code == 422, response.content[:300]
    assert any(name.startswith(field) or name == field for name in _fields(response)), response.json()
    assert "Unicode" in " ".join(_fields(response).values())


def test_a_surrogate_pair_is_ordinary_text(version, token):
    response = _post(token, '{"version": "%s", "input": {"prompt": "a \\ud83d\\ude00"}}' % version.id)
    assert response.status_code == 201, response.content[:300]
    assert Prediction.objects.get().input["prompt"] == "a \U0001f600"


def _bad_row(model=Prediction, **fields):
    """A row stored before inputs were checked, as an older SQLite (whose
    JSON_VALID took lone surrogates and NaN) kept it. PostgreSQL refuses such
    JSON itself, so there the row cannot exist and nothing can meet it."""
    if connection.vendor != "sqlite":
        with pytest.raises((DataError, UnicodeEncodeError, ValueError)), transaction.atomic():
            model.objects.create(**fields)
        pytest.skip("PostgreSQL cannot store this row")
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA ignore_check_constraints = ON")
        try:
            return model.objects.create(**fields)
        finally:
            cursor.execute("PRAGMA ignore_check_constraints = OFF")


@pytest.mark.embedded
def test_every_page_survives_a_bad_row_already_stored(version, alice, bob, token):
    comparison = _bad_row(Comparison, owner=alice, visibility="public", input={"prompt": "bad \ud800 row"})
    prediction = _bad_row(
        version=version,
        owner=alice,
        visibility="public",
        status="succeeded",
        comparison=comparison,
        input={"prompt": "bad \ud800 row", "fail": "\udc00", "\ud801": "key"},
    )
    owner, other = login(Client(), alice), login(Client(), bob)
    for client, url in [
        (owner, f"/p/{prediction.id}"),
        (other, f"/p/{prediction.id}"),
        (Client(), f"/p/{prediction.id}"),
        (owner, "/account/"),
        (other, "/gallery"),
        (Client(), "/gallery"),
        (Client(), f"/c/{comparison.id}"),
        (Client(), f"/c/{comparison.id}?card={prediction.id}"),
    ]:
        response = client.get(url)
        assert response.status_code == 200, url
        if url.startswith("/p/"):
            assert "bad \ufffd row" in response.content.decode()
    auth = {"Authorization": f"Bearer {token}"}
    for url in (f"/v1/predictions/{prediction.id}", "/v1/predictions"):
        response = Client().get(url, headers=auth)
        assert response.status_code == 200, url
        json.dumps(response.json(), ensure_ascii=False).encode()


@pytest.mark.embedded
def test_a_prediction_whose_input_cannot_be_sent_fails_with_a_clear_error(version, alice):
    # NaN is not JSON: the model server cannot be sent it. Only a row stored
    # before inputs were checked at the edge can hold one.
    prediction = _bad_row(version=version, owner=alice, input={"prompt": "x", "guidance_scale": float("nan")})
    run_prediction.apply(args=[prediction.id])
    prediction.refresh_from_db()
    assert prediction.status == "failed"
    assert "could not be sent" in prediction.error


@pytest.mark.parametrize("value", ["\ud800", float("nan"), float("inf"), {1, 2}])
def test_an_input_no_model_can_be_sent_is_a_permanent_backend_error(value):
    # Whatever the database could store, the worker fails such a prediction
    # at once instead of crashing on every retry.
    with pytest.raises(BackendError, match="could not be sent") as caught:
        json_body({"input": {"prompt": value}})
    assert caught.value.permanent


# --- Length ------------------------------------------------------------------------------


def test_a_megabyte_prompt_is_a_422(version, token, settings):
    response = _post(token, json.dumps({"version": version.id, "input": {"prompt": "a" * 1_000_000}}))
    assert response.status_code == 422, response.content[:300]
    assert "10,000" in _fields(response)["input.prompt"]
    settings.MAX_TEXT_LENGTH = 50
    response = _post(token, json.dumps({"version": version.id, "input": {"prompt": "x", "fail": ["a" * 51]}}))
    assert "input.fail" in _fields(response)
    assert _post(token, json.dumps({"version": version.id, "input": {"prompt": "a" * 50}})).status_code == 201


def test_the_playground_gives_a_long_prompt_a_field_error(version, alice):
    response = login(Client(), alice).post("/run", {"version": version.id, "prompt": "a" * 10_001})
    assert response.status_code == 400
    assert response.context["form"].errors["prompt"]
    assert not Comparison.objects.exists()


# --- data: URIs ---------------------------------------------------------------------------


def _uri(media_type, data):
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


@pytest.fixture(scope="module")
def huge_png():
    buffer = io.BytesIO()
    Image.new("L", (5000, 5000)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("media_type", ["application/octet-stream", "IMAGE/PNG", "Image/png", "", "text/plain"])
def test_an_image_is_checked_whatever_its_declared_type(version, token, huge_png, media_type):
    body = {"version": version.id, "input": {"prompt": "x", "image": _uri(media_type, huge_png)}}
    response = _post(token, json.dumps(body))
    assert response.status_code == 422, response.content[:300]
    assert "pixels" in _fields(response)["input.image"]


def test_an_image_with_bytes_appended_is_re_encoded(version, token):
    original = png() + b"<script>alert(1)</script>" * 10
    body = {"version": version.id, "input": {"prompt": "x", "image": _uri("application/octet-stream", original)}}
    assert _post(token, json.dumps(body)).status_code == 201
    stored = Prediction.objects.get().input["image"]
    header, _, payload = stored.partition(",")
    assert header == "data:image/png;base64"
    assert b"script" not in base64.b64decode(payload)
    assert Image.open(io.BytesIO(base64.b64decode(payload))).size == (64, 48)


def test_a_file_that_is_not_an_image_is_passed_as_it_is(version, token):
    uri = _uri("application/octet-stream", b"just some bytes")
    assert _post(token, json.dumps({"version": version.id, "input": {"prompt": "x", "image": uri}})).status_code == 201
    assert Prediction.objects.get().input["image"] == uri


def test_a_fetched_image_is_checked_whatever_its_content_type(huge_png):
    with pytest.raises(uploads.UploadRejected):
        uploads.clean_image_bytes_for_model(huge_png, "application/octet-stream")
    data, content_type = uploads.clean_image_bytes_for_model(png() + b"junk", "binary/octet-stream")
    assert content_type == "image/png" and not data.endswith(b"junk")


def test_bad_base64_is_a_422(version, token):
    for uri in ("data:image/png;base64,!!!!", "data:application/octet-stream;base64,@@@"):
        response = _post(token, json.dumps({"version": version.id, "input": {"prompt": "x", "image": uri}}))
        assert response.status_code == 422, uri
        assert "base64" in _fields(response)["input.image"]


def test_a_safety_checker_line_nested_deep_is_no_verdict():
    from app.core.logs import nsfw_flags

    assert nsfw_flags("nsfw_content_detected: [" + DEEP_BODY + "]\n") == []
    assert nsfw_flags("nsfw_content_detected: [true, false]\n") == [True, False]


def test_every_page_survives_a_deeply_nested_row_already_stored(version, alice, token):
    deep = []
    for _ in range(900):
        deep = [deep]
    prediction = Prediction.objects.create(
        version=version, owner=alice, visibility="public", status="succeeded", input={"prompt": "deep", "fail": deep}
    )
    for client, url in [
        (login(Client(), alice), f"/p/{prediction.id}"),
        (Client(), f"/p/{prediction.id}"),
        (login(Client(), alice), "/account/"),
        (Client(), "/gallery"),
    ]:
        assert client.get(url).status_code == 200, url
    for url in (f"/v1/predictions/{prediction.id}", "/v1/predictions"):
        assert Client().get(url, headers={"Authorization": f"Bearer {token}"}).status_code == 200, url
