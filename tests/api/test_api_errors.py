"""What /v1 answers when a request is wrong: RFC 7807 problems a caller can act
on, and nothing saved or queued for a request that was refused."""

import base64
import copy
import json
from datetime import timedelta

import httpx
import pytest
from celery.signals import before_task_publish
from django.utils import timezone

from app.core import schema
from app.models import Prediction
from app.services import catalog
from tests.conftest import COG_PREDICTOR_DIR

pytestmark = pytest.mark.django_db(transaction=True)

SCHEMA = json.loads((COG_PREDICTOR_DIR / ".cog" / "openapi_schema.json").read_text())


@pytest.fixture
def queued():
    """Names of the tasks sent to the broker while the test runs (any thread)."""
    sent = []

    def record(sender=None, **kwargs):
        sent.append(sender)

    before_task_publish.connect(record, weak=False)
    yield sent
    before_task_publish.disconnect(record)


@pytest.fixture
def offline_version(transactional_db):
    """A version whose server is never called: for requests refused before that."""
    return catalog.add_version("local", "offline", "cog", "http://127.0.0.1:9", SCHEMA)


@pytest.fixture
def uri_version(transactional_db):
    """A version with file inputs, as Cog writes Path and list[Path] fields."""
    openapi_schema = copy.deepcopy(SCHEMA)
    properties = openapi_schema["components"]["schemas"]["Input"]["properties"]
    properties["image"] = {"type": "string", "format": "uri", "x-order": 11}
    properties["images"] = {"type": "array", "items": {"type": "string", "format": "uri"}, "x-order": 12}
    return catalog.add_version("local", "img2img", "cog", "http://127.0.0.1:9", openapi_schema)


def assert_problem(response, status):
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status
    assert problem["title"] and problem["detail"]
    return problem


def invalid_fields(response):
    problem = assert_problem(response, 422)
    return {item["field"]: item["description"] for item in problem["invalid_fields"]}


# --- Invalid input ------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.parametrize(
    "input, field, message",
    [
        ({"prompt": "x", "width": "wide"}, "input.width", "Must be a whole number."),
        ({"prompt": "x", "width": 8}, "input.width", "Must be at least 16."),
        ({"prompt": "x", "num_outputs": 5}, "input.num_outputs", "Must be at most 4."),
        ({"prompt": "x", "guidance_scale": True}, "input.guidance_scale", "Must be a number."),
        ({"prompt": "x", "scheduler": "EULER_A"}, "input.scheduler", "Must be one of: DDIM, K_EULER, PNDM."),
        ({"width": 64}, "input.prompt", "This field is required."),
        ({"prompt": None}, "input.prompt", "This field is required."),
        ({"prompt": "x", "strength": 0.5}, "input.strength", "Unknown field."),
    ],
    ids=["type", "minimum", "maximum", "bool-is-not-a-number", "enum", "required", "null-is-not-given", "unknown"],
)
def test_invalid_input_is_refused_field_by_field_and_nothing_runs(api, cog_version, queued, input, field, message):
    response = api.post("/v1/predictions", json={"version": cog_version.id, "input": input})

    fields = invalid_fields(response)
    assert list(fields) == [field]
    assert fields[field].startswith(message)
    assert field in response.json()["detail"]
    assert not Prediction.objects.exists()
    assert queued == []


@pytest.mark.e2e
def test_every_invalid_field_is_named_at_once(api, cog_version, queued):
    response = api.post(
        "/v1/predictions",
        json={"version": cog_version.id, "input": {"width": 4096, "scheduler": "nope", "colour": "red"}},
    )

    assert set(invalid_fields(response)) == {"input.prompt", "input.width", "input.scheduler", "input.colour"}
    assert not Prediction.objects.exists() and queued == []


def test_text_with_a_nul_character_is_refused(api, offline_version, queued):
    """PostgreSQL cannot store U+0000 in JSON or text: refuse it as input, not with a 500."""
    response = api.post(
        "/v1/predictions",
        json={"version": offline_version.id, "input": {"prompt": "a red\u0000fox", "negative_prompt": "ok"}},
    )

    fields = invalid_fields(response)
    assert list(fields) == ["input.prompt"]
    assert "NUL" in fields["input.prompt"]
    assert not Prediction.objects.exists() and queued == []


@pytest.mark.parametrize("input", ["a red fox", ["a red fox"], 42])
def test_input_that_is_not_an_object_is_refused(api, offline_version, queued, input):
    response = api.post("/v1/predictions", json={"version": offline_version.id, "input": input})

    assert invalid_fields(response) == {"input": "Input must be a JSON object."}
    assert not Prediction.objects.exists() and queued == []


@pytest.mark.e2e
def test_null_fields_count_as_not_given(api, cog_version):
    response = api.post(
        "/v1/predictions",
        json={"version": cog_version.id, "input": {"prompt": "a fox", "width": None, "seed": None}},
    )

    assert response.status_code == 201, response.text
    saved = Prediction.objects.get().input
    assert "width" not in saved  # the model's own default applies
    assert isinstance(saved["seed"], int)  # a seed was chosen, so it can be re-run


@pytest.mark.parametrize(
    "input, field",
    [
        ({"image": "file:///etc/passwd"}, "input.image"),
        ({"image": "/etc/passwd"}, "input.image"),
        ({"image": "../../weights/model.safetensors"}, "input.image"),
        ({"images": ["https://example.com/a.png", "/etc/shadow"]}, "input.images"),
        ({"images": ["file:///root/.ssh/id_rsa"]}, "input.images"),
    ],
    ids=["file-url", "absolute-path", "relative-path", "path-in-a-list", "file-url-in-a-list"],
)
def test_a_local_file_in_a_file_input_is_refused(api, uri_version, queued, input, field):
    """The model server would read a local path it is given: only http(s) and data: go through."""
    response = api.post("/v1/predictions", json={"version": uri_version.id, "input": {"prompt": "x", **input}})

    fields = invalid_fields(response)
    assert list(fields) == [field]
    assert "http(s) URL or a data: URI" in fields[field]
    assert not Prediction.objects.exists() and queued == []


def test_urls_and_data_uris_are_accepted_for_file_inputs(uri_version):
    cleaned = schema.validate_input(
        uri_version,
        {"prompt": "x", "image": "https://example.com/a.png", "images": ["data:image/png;base64,AAAA", "http://h/b"]},
    )

    assert cleaned["image"] == "https://example.com/a.png"
    assert cleaned["images"] == ["data:image/png;base64,AAAA", "http://h/b"]


# --- Versions, tokens, bodies, methods ---------------------------------------------------


def test_an_unknown_version_is_not_found(api, offline_version, queued):
    for ref in ["0" * 64, f"local/other-model:{offline_version.id}", 12345, "\u0000"]:
        response = api.post("/v1/predictions", json={"version": ref, "input": {"prompt": "x"}})
        assert_problem(response, 404)
    assert_problem(api.post("/v1/models/local/nothing-here/predictions", json={"input": {"prompt": "x"}}), 404)
    assert_problem(api.post("/v1/models/local/%00/predictions", json={"input": {"prompt": "x"}}), 404)
    assert_problem(api.get("/v1/models/%00/offline"), 404)
    assert_problem(api.get(f"/v1/models/local/offline/versions/{offline_version.id[:10]}%00"), 404)
    assert not Prediction.objects.exists() and queued == []


def test_a_missing_version_is_named(api, queued):
    response = api.post("/v1/predictions", json={"input": {"prompt": "x"}})

    assert invalid_fields(response) == {"version": "This field is required."}
    assert queued == []


def test_a_bad_or_missing_token_is_unauthenticated(site, offline_version, queued):
    for headers in [
        {},
        {"Authorization": "Bearer lb_not-a-real-token"},
        {"Authorization": "Basic YWxpY2U6cHc="},
        {"Authorization": "Bearer"},
    ]:
        for method, path, body in [
            ("POST", "/v1/predictions", {"version": offline_version.id, "input": {"prompt": "x"}}),
            ("GET", "/v1/predictions", None),
            ("GET", "/v1/models/local/offline", None),
        ]:
            response = httpx.request(method, site.url + path, json=body, headers=headers)
            assert_problem(response, 401)
            assert response.headers["WWW-Authenticate"] == "Bearer"
    assert not Prediction.objects.exists() and queued == []


def test_a_revoked_token_is_unauthenticated(site, alice):
    from app.models import ApiToken

    token, raw = ApiToken.issue(alice)
    token.revoke()

    response = httpx.get(site.url + "/v1/predictions", headers={"Authorization": f"Bearer {raw}"})

    assert_problem(response, 401)


def test_a_body_that_is_not_a_json_object_is_a_bad_request(api, offline_version, queued):
    for body in [b'{"version": "abc", "input": {', b"\xff\xfe not even text", b'["a", "list"]', b"null"]:
        response = api.post("/v1/predictions", content=body, headers={"Content-Type": "application/json"})
        assert_problem(response, 400)
    assert not Prediction.objects.exists() and queued == []


def test_a_method_the_endpoint_does_not_have_is_a_problem(api):
    for method, path, allowed in [
        ("DELETE", "/v1/predictions", "GET, POST"),
        ("PUT", "/v1/predictions/abc", "GET"),
        ("GET", "/v1/predictions/abc/cancel", "POST"),
    ]:
        response = api.request(method, path)
        assert_problem(response, 405)
        assert response.headers["Allow"] == allowed


# --- Listing and other people's predictions ---------------------------------------------


@pytest.fixture
def many_predictions(alice, bob, offline_version):
    """105 of alice's predictions (some created in the same microsecond) and a few of bob's."""
    start = timezone.now() - timedelta(days=1)
    rows = [
        Prediction(
            version=offline_version,
            owner=alice,
            input={"prompt": f"p{i}"},
            status="succeeded",
            created_at=start + timedelta(seconds=i // 3),
        )
        for i in range(105)
    ]
    rows += [Prediction(version=offline_version, owner=bob, input={"prompt": "bob's"}) for _ in range(3)]
    Prediction.objects.bulk_create(rows)
    return list(Prediction.objects.filter(owner=alice).order_by("-created_at", "-pk").values_list("pk", flat=True))


def test_the_list_pages_through_all_predictions_with_absolute_links(site, api, many_predictions):
    first = api.get("/v1/predictions")
    assert first.status_code == 200
    first = first.json()
    assert len(first["results"]) == 100
    assert first["previous"] is None
    assert first["next"].startswith(site.url + "/v1/predictions?cursor=")

    second = httpx.get(first["next"], headers=api.headers).json()
    assert len(second["results"]) == 5
    assert second["next"] is None
    assert second["previous"].startswith(site.url + "/v1/predictions?cursor=")

    ids = [p["id"] for p in first["results"] + second["results"]]
    assert ids == many_predictions  # newest first, each exactly once, none of bob's
    assert all(p["urls"]["get"].startswith(site.url) for p in first["results"])

    back = httpx.get(second["previous"], headers=api.headers).json()
    assert [p["id"] for p in back["results"]] == many_predictions[:100]
    assert back["previous"] is None
    assert back["next"].startswith(site.url)


def test_a_garbage_cursor_is_a_bad_request(api):
    for cursor in [
        "garbage",
        "%%%",
        base64.urlsafe_b64encode(b"next|yesterday|abc").decode(),
        base64.urlsafe_b64encode(b"sideways|2024-01-01T00:00:00+00:00|abc").decode(),
        base64.urlsafe_b64encode(b"next|2024-01-01T00:00:00+00:00").decode(),
        base64.urlsafe_b64encode(b"next|2024-01-01T00:00:00+00:00|\x00").decode(),
        base64.urlsafe_b64encode(b"next|2024-01-01T00:00:00+00:00|" + b"a" * 500).decode(),
    ]:
        response = api.get("/v1/predictions", params={"cursor": cursor})
        assert response.status_code == 400, (cursor, response.text[:300])
        assert_problem(response, 400)


def test_another_users_private_prediction_is_not_found(api, bob, offline_version):
    private = Prediction.objects.create(
        version=offline_version, owner=bob, input={"prompt": "mine"}, visibility="private", status="processing"
    )
    unlisted = Prediction.objects.create(
        version=offline_version, owner=bob, input={"prompt": "shared"}, visibility="unlisted", status="processing"
    )

    assert_problem(api.get(f"/v1/predictions/{private.id}"), 404)
    assert_problem(api.post(f"/v1/predictions/{private.id}/cancel"), 404)
    for made_up in ["no-such-prediction", "%00", "x" * 300]:
        assert_problem(api.get(f"/v1/predictions/{made_up}"), 404)
        assert_problem(api.post(f"/v1/predictions/{made_up}/cancel"), 404)
    # A link someone shared can be read, but only its owner can cancel it.
    assert api.get(f"/v1/predictions/{unlisted.id}").json()["input"] == {"prompt": "shared"}
    assert_problem(api.post(f"/v1/predictions/{unlisted.id}/cancel"), 404)
    assert set(Prediction.objects.values_list("status", flat=True)) == {"processing"}
