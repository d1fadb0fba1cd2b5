"""Fuzzing /v1 from its own OpenAPI document (schemathesis) and the create
endpoint's input against a real version (hypothesis): no 5xx, ever."""

import json

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.models import ApiToken

pytestmark = pytest.mark.django_db

FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture
def token(version, alice, make_prediction):
    make_prediction(owner=alice, visibility="public")  # something to list, get and cancel
    return ApiToken.issue(alice)[1]


@pytest.fixture
def no_waiting(settings):
    # Nothing runs predictions here: `Prefer: wait` must not hold a request.
    settings.PREFER_WAIT_MAX = 0


schema = schemathesis.openapi.from_wsgi("/v1/openapi.json", WSGIHandler())


@schema.parametrize()
@FUZZ
def test_no_operation_answers_5xx(case, token, no_waiting):
    response = case.call(headers={"Authorization": f"Bearer {token}"})
    assert response.status_code < 500, (case.as_curl_command(), response.text[:500])


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3),
    max_leaves=8,
)
FIELDS = ["prompt", "negative_prompt", "width", "height", "num_outputs", "num_inference_steps", "guidance_scale",
          "scheduler", "seed", "image", "nsfw", "disable_safety_checker", "unknown"]


@FUZZ
@given(
    input=st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=6) | JSON,
    webhook=st.none() | st.text(max_size=40) | st.sampled_from(["http://127.0.0.2/x", "http://[::1", "https://"]),
    visibility=st.none() | st.text(max_size=8),
)
def test_creating_with_any_input_never_answers_5xx(version, token, no_waiting, input, webhook, visibility):
    body = {"version": version.id, "input": input}
    if webhook is not None:
        body["webhook"] = webhook
    if visibility is not None:
        body["visibility"] = visibility
    response = Client().post(
        "/v1/predictions", json.dumps(body), content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code < 500, (body, response.content[:500])


@pytest.mark.parametrize("body", [
    {"input": {"prompt": "nul \u0000 inside"}},
    {"input": {"prompt": "x", "nsfw": "\u0000"}},
    {"input": {"prompt": "x"}, "webhook": "https://example.com/" + "a" * 1200},
    {"input": {"prompt": "x"}, "webhook": "https://exa\u0000mple.com/"},
])
def test_text_postgres_cannot_store_is_refused_not_a_500(version, token, body):
    response = Client().post(
        "/v1/predictions", json.dumps({"version": version.id, **body}), content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code in (400, 422), response.content[:300]
