"""/v1 trainings through the real Cog server in train mode, the live site and a
real worker: a training makes a version that runs with its weights; cancel;
refusals that save nothing."""

import pytest

from tests.conftest import wait_until
from tests.trainings.conftest import data_uri, image_zip

pytestmark = pytest.mark.django_db(transaction=True)


def _url(version):
    return f"/v1/models/{version.model.owner}/{version.model.name}/versions/{version.id}/trainings"


def _wait(training_id, statuses=("succeeded", "failed", "canceled"), timeout=60):
    from app.models import Training

    def done():
        training = Training.objects.get(pk=training_id)
        return training if training.status in statuses else None

    return wait_until(done, timeout=timeout, message=f"training {training_id} to reach {statuses}")


def test_a_training_makes_a_version_that_runs_with_its_weights(api, worker, base_version, destination):
    from app.models import Prediction, Version

    response = api.post(
        _url(base_version),
        json={
            "destination": "alice/my-face",
            "input": {"input_images": data_uri(image_zip(4)), "token_string": "zqx", "max_train_steps": 3},
        },
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "starting"
    assert body["urls"]["get"].endswith(f"/v1/trainings/{body['id']}")
    training = _wait(body["id"])
    assert training.status == "succeeded", training.error
    assert "step 3/3 loss=" in training.logs
    got = api.get(f"/v1/trainings/{body['id']}").json()
    assert got["output"]["version"] == f"alice/my-face:{training.new_version_id}"
    weights = api.get(got["output"]["weights"])
    assert weights.status_code == 200 and len(weights.content) > 8
    version = Version.objects.get(pk=training.new_version_id)
    assert version.base_id == base_version.id and version.trigger_word == "zqx"
    assert version.openapi_schema == base_version.openapi_schema
    # It runs at once: same prompt and seed, another image than its base's.
    runs = {}
    for ref in (version, base_version):
        created = api.post(
            "/v1/predictions", json={"version": ref.id, "input": {"prompt": "a photo of zqx", "seed": 7}}
        )
        assert created.status_code == 201, created.text
        runs[ref.id] = created.json()["id"]
    for prediction_id in runs.values():
        wait_until(lambda pid=prediction_id: Prediction.objects.get(pk=pid).is_terminal, timeout=30)
    fine, base = (Prediction.objects.get(pk=runs[v.id]) for v in (version, base_version))
    assert fine.status == base.status == "succeeded", (fine.error, base.error)
    assert "lora loaded" in fine.logs and "lora" not in base.logs
    assert fine.outputs.get().file.read() != base.outputs.get().file.read()
    # And the comparison of base and fine-tune, on prompts with the trigger word.
    wait_until(lambda: training.comparisons.count() == 3, timeout=30, message="the comparisons")
    assert all("zqx" in comparison.prompt for comparison in training.comparisons.all())
    assert {p.version_id for c in training.comparisons.all() for p in c.predictions.all()} == {
        version.id,
        base_version.id,
    }


def test_cancel_mid_training(api, worker, base_version, destination):
    response = api.post(
        _url(base_version),
        json={
            "destination": "alice/my-face",
            "input": {"input_images": data_uri(image_zip(4)), "max_train_steps": 200, "step_delay": 0.1},
        },
    )
    training_id = response.json()["id"]
    _wait(training_id, statuses=("processing",))
    wait_until(lambda: "step 2/" in api.get(f"/v1/trainings/{training_id}").json()["logs"], timeout=20)
    canceled = api.post(f"/v1/trainings/{training_id}/cancel")
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    training = _wait(training_id)
    assert training.status == "canceled" and training.new_version is None


@pytest.mark.parametrize(
    ("images", "words"),
    [
        (data_uri(b"PK\x03\x04 this is not a zip at all"), "not an archive that can be read"),
        (data_uri(image_zip(0, extra=[("notes.txt", b"hello")])), "no images to train on"),
        (data_uri(image_zip(1, extra=[("evil.png", b"\x89PNG\r\n\x1a\n garbage")])), "evil.png"),
        ("http://127.0.0.1:1/images.zip", "input_images"),
        ("", "Give the training images"),
    ],
)
def test_bad_images_are_refused_and_nothing_is_saved(api, base_version, destination, images, words):
    from app.models import Training

    response = api.post(_url(base_version), json={"destination": "alice/my-face", "input": {"input_images": images}})
    assert response.status_code == 422, response.text
    assert words in response.text
    assert [field["field"] for field in response.json()["invalid_fields"]] == ["input.input_images"]
    assert not Training.objects.exists()


def test_a_destination_not_owned_or_missing_is_refused(api, base_version, bob):
    from app.models import Model, Training

    Model.objects.create(owner="bob", name="his", user=bob, visibility="public")
    Model.objects.create(owner="bob", name="secret", user=bob, visibility="private")
    images = {"input_images": data_uri(image_zip(2))}
    cases = [("bob/his", 403, "not yours"), ("alice/nothing", 404, "does not exist"), ("bob/secret", 404, "")]
    for destination, status, words in cases:
        response = api.post(_url(base_version), json={"destination": destination, "input": images})
        assert response.status_code == status, response.text
        assert response.headers["Content-Type"].startswith("application/problem+json")
        assert words in response.json()["detail"]
    response = api.post(_url(base_version), json={"input": images})
    assert response.status_code == 422
    assert [field["field"] for field in response.json()["invalid_fields"]] == ["destination"]
    assert not Training.objects.exists()


def test_trainings_list_only_the_callers(api, base_version, destination, queued_trainings, bob):
    from app.models import Model, Training

    api.post(
        _url(base_version), json={"destination": "alice/my-face", "input": {"input_images": data_uri(image_zip(1))}}
    )
    his = Model.objects.create(owner="bob", name="x", user=bob)
    Training.objects.create(version=base_version, destination=his, owner=bob)
    listed = api.get("/v1/trainings").json()
    assert [t["destination"] for t in listed["results"]] == ["alice/my-face"]
    assert listed["next"] is None


def test_a_single_image_upload_passes_the_image_checks(api, base_version, destination, queued_trainings, settings):
    settings.UPLOAD_MAX_PIXELS = 16 * 16
    response = api.post(
        _url(base_version),
        json={"destination": "alice/my-face", "input": {"input_images": data_uri(image_zip(1))}},
    )
    assert response.status_code == 422
    assert "pixels" in response.json()["detail"] or "pixels" in response.text
