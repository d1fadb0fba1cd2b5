"""Predictions through a real Celery worker to a real Cog server and back."""

import io
import json

import pytest
from PIL import Image

from app.services import predictions
from tests.conftest import wait_for_status

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_prediction_runs_to_success_with_stored_outputs(worker, cog_version, alice):
    prediction = predictions.start(cog_version, {"prompt": "a red fox", "num_outputs": 2, "width": 96}, owner=alice)

    prediction = wait_for_status(prediction.id)

    assert prediction.status == "succeeded", prediction.error
    assert prediction.logs.strip().splitlines()[-1] == "step 4/4"
    assert prediction.percent == 100
    assert prediction.started_at and prediction.completed_at and prediction.predict_time > 0
    outputs = list(prediction.outputs.all())
    assert [o.index for o in outputs] == [0, 1]
    assert (outputs[0].width, outputs[0].height) == (96, 64)
    png = Image.open(io.BytesIO(outputs[0].file.read()))
    assert "a red fox" in png.info["parameters"]
    assert f"Seed: {prediction.input['seed']}" in png.info["parameters"]
    assert json.loads(png.info["lightbox"])["input"] == prediction.input
    thumb = Image.open(outputs[0].thumbnail.open())
    assert thumb.format == "WEBP"
