"""The official replicate client (1.0.7) against Lightbox's /v1 API."""

import pytest
import replicate

from app.models import Prediction
from tests.conftest import wait_for_status

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def client(site, alice_token):
    return replicate.Client(api_token=alice_token, base_url=site.url)


def test_run_by_version_returns_the_stored_images(worker, cog_version, client):
    output = client.run(f"local/test-model:{cog_version.id}", input={"prompt": "a lighthouse", "seed": 7})

    assert len(output) == 1
    url = str(output[0]) if not hasattr(output[0], "url") else output[0].url
    assert url.endswith("/0.png")
    prediction = Prediction.objects.get()
    assert prediction.status == "succeeded"
    assert prediction.input["seed"] == 7
    assert prediction.source == "api" and prediction.visibility == "private"


def test_run_by_model_uses_the_latest_version(worker, cog_version, client):
    output = client.run("local/test-model", input={"prompt": "a lighthouse"})

    assert len(output) == 1
    assert Prediction.objects.get().version == cog_version


def test_create_get_list_and_cancel(worker, cog_version, client):
    created = client.predictions.create(version=cog_version.id, input={"prompt": "slow", "step_delay": 0.5})
    assert created.status in ("starting", "processing")

    wait_for_status(created.id, statuses=("processing",))
    canceled = client.predictions.cancel(created.id)
    assert canceled.status == "canceled"

    done = client.predictions.create(version=cog_version.id, input={"prompt": "fast"})
    done.wait()
    assert done.status == "succeeded"
    assert client.predictions.get(done.id).output == done.output

    page = client.predictions.list()
    assert [p.id for p in page.results] == [done.id, created.id]


def test_models_and_versions(cog_version, client):
    model = client.models.get("local/test-model")
    assert model.owner == "local" and model.name == "test-model"
    assert model.latest_version.id == cog_version.id

    version = client.models.get("local/test-model").versions.get(cog_version.id)
    assert version.openapi_schema["components"]["schemas"]["Input"]["properties"]["prompt"]["type"] == "string"
    assert version.cog_version


def test_invalid_input_raises_with_the_field_named(cog_version, client):
    with pytest.raises(replicate.exceptions.ReplicateError) as caught:
        client.predictions.create(version=cog_version.id, input={"prompt": "x", "width": 5000})

    assert caught.value.status == 422
    assert "width" in caught.value.detail and "at most 1024" in caught.value.detail
    assert not Prediction.objects.exists()
