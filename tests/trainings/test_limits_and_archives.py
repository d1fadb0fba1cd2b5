"""A training is a run like a prediction for the limits, and its images pass
the upload checks member by member, whatever the archive holds."""

import io
import tarfile
import zipfile

import pytest

from tests.trainings.conftest import data_uri, image_zip, png

pytestmark = pytest.mark.django_db(transaction=True)


def _url(version):
    return f"/v1/models/{version.model.owner}/{version.model.name}/versions/{version.id}/trainings"


def _post(api, version, images, **given):
    return api.post(_url(version), json={"destination": "alice/my-face", "input": {"input_images": images, **given}})


def test_trainings_count_against_the_daily_quota(api, base_version, destination, queued_trainings, settings):
    from app.models import Training

    settings.DAILY_QUOTA = 1
    assert _post(api, base_version, data_uri(image_zip(1))).status_code == 201
    refused = _post(api, base_version, data_uri(image_zip(1)))
    assert refused.status_code == 429 and "quota" in refused.json()["detail"]
    # And a prediction after it is refused too: one quota for both.
    prediction = api.post("/v1/predictions", json={"version": base_version.id, "input": {"prompt": "x"}})
    assert prediction.status_code == 429
    assert Training.objects.count() == 1


def test_trainings_running_count_as_running(api, base_version, destination, queued_trainings, settings):
    settings.MAX_CONCURRENT = 1
    assert _post(api, base_version, data_uri(image_zip(1))).status_code == 201
    refused = api.post("/v1/predictions", json={"version": base_version.id, "input": {"prompt": "x"}})
    assert refused.status_code == 429 and "running" in refused.json()["detail"]


def test_archive_members_are_checked_and_repacked(api, base_version, destination, queued_trainings):
    from app.models import Training

    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as archive:
        for name, data in [
            ("../../etc/evil.png", png((1, 2, 3))),
            ("ok/a.png", png((4, 5, 6))),
            ("ok/a.txt", b"a caption"),
            (".hidden.png", b"whatever"),
            ("__MACOSX/._a.png", b"junk"),
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("link.png")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        archive.addfile(link)
    response = _post(api, base_version, data_uri(tar.getvalue(), "application/x-tar"))
    assert response.status_code == 201, response.text
    training = Training.objects.get()
    # Only ok/a.png and its caption: no path out, no hidden file, no link.
    assert training.image_count == 1
    with training.images.open("rb") as handle, zipfile.ZipFile(handle) as repacked:
        assert sorted(repacked.namelist()) == ["0000.png", "0000.txt"]
        assert repacked.read("0000.txt") == b"a caption"


@pytest.mark.parametrize(
    ("setting", "value", "words"),
    [
        ("TRAINING_MAX_IMAGES", 2, "at most 2 training images"),
        ("TRAINING_MAX_BYTES", 300, "larger than 300 bytes in all"),
    ],
)
def test_too_many_or_too_large_is_refused(api, base_version, destination, settings, setting, value, words):
    from app.models import Training

    setattr(settings, setting, value)
    response = _post(api, base_version, data_uri(image_zip(3)))
    assert response.status_code == 422 and words in response.text
    assert not Training.objects.exists()


def test_a_zip_bomb_is_refused_before_it_is_inflated(api, base_version, destination, settings):
    settings.TRAINING_MAX_BYTES = 1024 * 1024
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("big.png", b"\0" * (50 * 1024 * 1024))
    response = _post(api, base_version, data_uri(buffer.getvalue()))
    assert response.status_code == 422 and "unpacks to more than" in response.text


def test_hostile_inputs_are_field_errors(api, base_version, destination):
    images = data_uri(image_zip(1))
    for given, field in [
        ({"max_train_steps": 0}, "input.max_train_steps"),
        ({"max_train_steps": "many"}, "input.max_train_steps"),
        ({"token_string": "two words"}, "input.token_string"),
        ({"token_string": "<script>"}, "input.token_string"),
        ({"learning_rate": {"nested": [1]}}, "input.learning_rate"),
    ]:
        response = _post(api, base_version, images, **given)
        assert response.status_code == 422, (given, response.text)
        assert [f["field"] for f in response.json()["invalid_fields"]] == [field]
    for body in ([], {"destination": "alice/my-face", "input": "zip"}, {"destination": 5, "input": {}}):
        response = api.post(_url(base_version), json=body)
        assert 400 <= response.status_code < 500, response.text


def test_others_trainings_are_not_there(api, base_version, bob):
    from app.models import Model, Training

    his = Model.objects.create(owner="bob", name="x", user=bob)
    training = Training.objects.create(version=base_version, destination=his, owner=bob)
    assert api.get(f"/v1/trainings/{training.id}").status_code == 404
    assert api.post(f"/v1/trainings/{training.id}/cancel").status_code == 404
    assert Training.objects.get().status == "starting"
