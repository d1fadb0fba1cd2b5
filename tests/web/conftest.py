"""Fixtures for the page tests: versions whose schemas are real Cog schemas
(no server needed: they are marked available just now), and predictions with
real stored outputs (PNG + WebP thumbnail), made without a worker."""

import copy
import io
import json
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from PIL import Image

SCHEMA = json.loads((Path(__file__).parent.parent / "cog_predictor" / ".cog" / "openapi_schema.json").read_text())


@pytest.fixture(autouse=True)
def queued(queued):
    """Every page test records the predictions it starts instead of sending
    them (tests/conftest.py). What a prediction does once queued is tests/engine's."""
    return queued


def turbo_schema():
    """Shaped like SD Turbo: few steps, 512² by default, no negative prompt or scheduler."""
    schema = copy.deepcopy(SCHEMA)
    props = schema["components"]["schemas"]["Input"]["properties"]
    props["num_inference_steps"].update(minimum=1, maximum=4, default=1)
    props["width"].update(default=512)
    props["height"].update(default=512)
    props["guidance_scale"].update(default=0.0)
    del props["negative_prompt"]
    del props["scheduler"]
    return schema


def make_version(owner, name, schema, location=None):
    from app.services import catalog

    location = location or f"http://127.0.0.1:9/{owner}/{name}"
    version = catalog.add_version(owner, name, "cog", location, schema, "0.23.1")
    version.available = True
    version.checked_at = timezone.now() + timedelta(hours=1)
    version.save()
    return version


@pytest.fixture
def sd_version(transactional_db):
    return make_version("local", "tiny-sd", copy.deepcopy(SCHEMA))


@pytest.fixture
def turbo_version(transactional_db):
    return make_version("local", "sd-turbo", turbo_schema())


def png_bytes(size=(96, 64), color=(200, 40, 40)):
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


def make_prediction(
    version,
    owner=None,
    prompt="a red fox",
    visibility="public",
    status="succeeded",
    outputs=1,
    comparison=None,
    **fields,
):
    from app.models import Prediction
    from app.services import storage

    now = timezone.now()
    prediction = Prediction.objects.create(
        version=version,
        owner=owner,
        input={"prompt": prompt, "seed": 42, "width": 96, "height": 64},
        status=status,
        visibility=visibility,
        source="web",
        comparison=comparison,
        logs="step 1/4\nstep 2/4\nstep 3/4\nstep 4/4\n" if status == "succeeded" else "step 1/4\n",
        started_at=now,
        completed_at=now if status in Prediction.TERMINAL else None,
        predict_time=1.25 if status == "succeeded" else None,
        **fields,
    )
    for index in range(outputs if status == "succeeded" else 0):
        storage._save_output(prediction, index, png_bytes(), "image/png")
    return prediction


@pytest.fixture
def client_alice(client, alice):
    client.force_login(alice)
    return client
