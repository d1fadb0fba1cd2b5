"""A Replicate base trains on Replicate's cloud (its stand-in): polled, its
weights copied here, and the new version runs there by the ref Replicate gave."""

import pytest

from tests.conftest import wait_until
from tests.trainings.conftest import data_uri, image_zip

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_replicate_base_trains_on_replicate_and_its_version_runs(api, worker, sdxl, destination, replicate_cloud):
    from app.models import Prediction, Training

    response = api.post(
        f"/v1/models/stability-ai/sdxl/versions/{sdxl.id}/trainings",
        json={"destination": "alice/my-face", "input": {"input_images": data_uri(image_zip(2)), "max_train_steps": 3}},
    )
    assert response.status_code == 201, response.text
    training_id = response.json()["id"]
    wait_until(lambda: Training.objects.get(pk=training_id).is_terminal, timeout=60, message="the training")
    training = Training.objects.get(pk=training_id)
    assert training.status == "succeeded", training.error
    assert "step 3/3 loss=" in training.logs
    sent = next(r for r in replicate_cloud.requests if r.path.endswith("/trainings") and r.method == "POST")
    assert sent.json["destination"] == "lightbox/alice-my-face"
    assert sent.json["input"]["input_images"].startswith("data:application/zip;base64,")
    version = training.new_version
    assert version.backend == "replicate" and version.location.startswith("lightbox/alice-my-face:")
    assert version.weights.size > 8 and version.base_id == sdxl.id
    created = api.post(
        "/v1/predictions",
        json={"version": version.id, "input": {"prompt": "a photo of TOK", "width": 64, "height": 64}},
    )
    assert created.status_code == 201, created.text
    wait_until(lambda: Prediction.objects.get(pk=created.json()["id"]).is_terminal, timeout=30)
    assert Prediction.objects.get(pk=created.json()["id"]).status == "succeeded"
