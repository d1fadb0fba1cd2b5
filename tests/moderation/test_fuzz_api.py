"""Fuzzing /v1 from its own OpenAPI document (schemathesis) and the create
endpoint's input against a real version (hypothesis): no 5xx, ever."""

import base64
import io
import json

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from app.models import ApiToken, Prediction

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


def _png(size, suffix=b""):
    buffer = io.BytesIO()
    Image.new("L", size).save(buffer, "PNG")
    return buffer.getvalue() + suffix


def _data_uri(media_type, data, encoding=";base64"):
    return f"data:{media_type}{encoding},{base64.b64encode(data).decode()}"


# Text as hostile clients send it: lone UTF-16 surrogates (json.dumps writes
# them as "\ud800" escapes), NUL, and strings past LIGHTBOX_MAX_TEXT_LENGTH.
TEXT = (
    st.text(max_size=30)
    | st.text(alphabet=st.characters(categories=["Cs"]) | st.characters(), min_size=1, max_size=10)
    | st.sampled_from(["\x00", "a\ud800b", "\udfff", "\ud83d\ude00"])
    | st.integers(10_001, 200_000).map(lambda n: "a" * n)
)
# Images whatever they claim to be: a 5000x5000 PNG, one with bytes appended,
# bad base64, a declared type in odd case or none.
DATA_URIS = st.builds(
    _data_uri,
    st.sampled_from(["image/png", "IMAGE/PNG", "Image/png", "image", "", "application/octet-stream", "text/plain"]),
    st.sampled_from([_png((5000, 5000)), _png((8, 8), b"<script>x</script>"), b"not an image", b""]),
    st.sampled_from([";base64", ";BASE64", ""]),
) | st.sampled_from(["data:image/png;base64,!!!!", "data:;base64,====", "data:,", "data:image/png;base64"])
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT | DATA_URIS,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(TEXT, children, max_size=3),
    max_leaves=8,
)
# JSON text nested past any limit, spliced into a body where "__DEEP__" stands.
DEEP = st.integers(30, 6000).map(lambda n: "[" * n + "]" * n) | st.integers(30, 3000).map(
    lambda n: '{"a":' * n + "1" + "}" * n
)
EVENTS = st.none() | JSON | st.lists(st.sampled_from(["start", "output", "logs", "completed"]) | JSON, max_size=4)
FIELDS = [
    "prompt",
    "negative_prompt",
    "width",
    "height",
    "num_outputs",
    "num_inference_steps",
    "guidance_scale",
    "scheduler",
    "seed",
    "image",
    "nsfw",
    "disable_safety_checker",
    "unknown",
]


@FUZZ
@given(
    input=st.dictionaries(st.sampled_from(FIELDS), JSON | st.just("__DEEP__"), max_size=6) | JSON,
    webhook=st.none()
    | TEXT
    | st.sampled_from(["http://127.0.0.2/x", "http://[::1", "https://", "https://example.com/\ud800"]),
    visibility=st.none() | st.text(max_size=8),
    events=EVENTS,
    deep=DEEP,
    version_ref=st.none() | TEXT,
)
def test_creating_with_any_input_never_answers_5xx(
    version, token, no_waiting, input, webhook, visibility, events, deep, version_ref
):
    body = {"version": version.id if version_ref is None else version_ref, "input": input}
    for name, value in (("webhook", webhook), ("visibility", visibility), ("webhook_events_filter", events)):
        if value is not None:
            body[name] = value
    raw = json.dumps(body).replace('"__DEEP__"', deep)
    for path in ("/v1/predictions", "/v1/models/local/idle-model/predictions"):
        response = Client().post(
            path, raw, content_type="application/json", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code < 500, (raw[:500], response.content[:500])


HOOK_BODIES = (
    st.builds(
        lambda status, output, logs, error: {
            "id": "r1",
            "status": status,
            "output": output,
            "logs": logs,
            "error": error,
            "metrics": {"predict_time": 1.0},
        },
        st.sampled_from(["starting", "processing", "succeeded", "failed", "canceled", "aborted"]) | TEXT,
        st.none() | JSON | st.lists(DATA_URIS, max_size=2),
        st.none() | TEXT,
        st.none() | JSON,
    ).map(json.dumps)
    | DEEP.map(lambda deep: '{"status": "succeeded", "output": %s}' % deep)
    | DEEP
    | st.text(max_size=50)
)


@pytest.fixture
def hooked(version, replicate_version, make_prediction, settings):
    """A running prediction on each backend, and the Replicate webhook secret."""
    from app.services.backends import replicate

    settings.REPLICATE_WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"k" * 24).decode()
    replicate._webhook_secret.cache_clear()
    predictions = make_prediction(), make_prediction(on=replicate_version)
    yield predictions
    replicate._webhook_secret.cache_clear()


@FUZZ
@given(raw=HOOK_BODIES)
def test_the_hook_endpoints_never_answer_5xx(hooked, settings, raw):
    from datetime import datetime, timezone

    from standardwebhooks.webhooks import Webhook

    from app.services.backends import cog

    cog_prediction, replicate_prediction = hooked
    Prediction.objects.filter(pk__in=[p.pk for p in hooked]).update(status="processing", remote_id="r1")
    cog_path = "/" + cog.webhook_url(cog_prediction).split("://", 1)[1].split("/", 1)[1]
    response = Client().post(cog_path, raw, content_type="application/json")
    assert response.status_code < 500, (raw[:500], response.content[:500])
    now = datetime.now(tz=timezone.utc)
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(settings.REPLICATE_WEBHOOK_SECRET).sign("msg_1", now, raw),
    }
    response = Client().post(
        f"/hooks/replicate/{replicate_prediction.id}", raw, content_type="application/json", headers=headers
    )
    assert response.status_code < 500, (raw[:500], response.content[:500])
