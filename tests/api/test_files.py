"""/v1/files, and files given as predictions' inputs, through the official
Python client (1.0.7) and plain HTTP."""

import io
import json
from datetime import timedelta

import pytest
import replicate
from django.core.files.storage import default_storage
from django.utils import timezone

from app.models import File, Prediction
from tests.api.clients import image_size, png
from tests.conftest import wait_for_status

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.png"
    path.write_bytes(png(40, 24))
    return path


def _stored(found):
    return default_storage.exists(found.file.name)


def test_run_with_a_local_file_uploads_it_and_the_model_reads_it(worker, cog_version, client, photo):
    with open(photo, "rb") as handle:
        output = client.run("local/test-model", input={"prompt": "a lighthouse", "image": handle})

    assert len(output) == 1
    prediction = Prediction.objects.get()
    assert prediction.status == "succeeded", prediction.error
    # The model got the image itself (it logs the size of what it read).
    assert "image 40x24" in prediction.logs
    assert prediction.input["image"].startswith("data:image/png;base64,")
    uploaded = File.objects.get()
    assert uploaded.owner.username == "alice" and uploaded.name == "photo.png"


def test_create_list_get_download_and_delete(client, api, photo):
    created = client.files.create(photo, metadata={"customer_reference_id": 123})

    assert created.name == "photo.png" and created.content_type == "image/png"
    assert created.metadata == {"customer_reference_id": 123}
    assert created.urls["get"].endswith(f"/v1/files/{created.id}")
    assert len(created.checksums["sha256"]) == 64 and created.size > 0
    assert created.expires_at > created.created_at
    assert [f.id for f in client.files.list()] == [created.id]
    assert client.files.get(created.id).checksums == created.checksums

    download = api.get(f"/v1/files/{created.id}/download")
    assert download.status_code == 200
    assert image_size(download.content) == (40, 24)
    assert "photo.png" in download.headers["Content-Disposition"]

    found = File.objects.get()
    assert client.files.delete(created.id) is True
    assert not File.objects.exists() and not _stored(found)
    with pytest.raises(replicate.exceptions.ReplicateError) as caught:
        client.files.get(created.id)
    assert caught.value.status == 404 and created.id in caught.value.detail
    assert client.files.list() == []


def test_the_list_pages_as_the_other_lists(client, api, monkeypatch):
    from app.views import api as api_views

    monkeypatch.setattr(api_views, "PAGE_SIZE", 2)
    ids = [client.files.create(_named(png(16, 16, (i, i, i)), f"shade-{i}.png")).id for i in range(3)]

    first = api.get("/v1/files").json()
    second = api.get(first["next"]).json()
    assert [f["id"] for f in first["results"]] + [f["id"] for f in second["results"]] == ids[::-1]
    assert second["next"] is None and second["previous"]


def test_others_files_are_not_there(client, bob_api, photo, cog_version):
    created = client.files.create(photo)

    for method, path in (
        ("GET", f"/v1/files/{created.id}"),
        ("GET", f"/v1/files/{created.id}/download"),
        ("DELETE", f"/v1/files/{created.id}"),
    ):
        response = bob_api.request(method, path)
        assert response.status_code == 404, (method, path)
        assert response.headers["Content-Type"] == "application/problem+json"
    assert bob_api.get("/v1/files").json()["results"] == []
    # Nor can bob give alice's file to a model.
    response = bob_api.post(
        "/v1/predictions", json={"version": cog_version.id, "input": {"prompt": "x", "image": created.urls["get"]}}
    )
    assert response.status_code == 422
    assert response.json()["invalid_fields"] == [
        {
            "field": "input.image",
            "description": f"No file {created.id}: it does not exist, has expired or is not yours.",
        }
    ]
    assert not Prediction.objects.exists() and File.objects.count() == 1


def test_what_is_not_an_image_is_refused_and_nothing_is_kept(api):
    response = api.post("/v1/files", files={"content": ("notes.txt", b"hello there", "text/plain")})

    assert response.status_code == 422
    assert response.json()["invalid_fields"][0]["field"] == "content"
    assert "Upload an image" in response.json()["detail"]
    assert not File.objects.exists()


def test_a_decompression_bomb_is_refused(api, settings):
    settings.UPLOAD_MAX_PIXELS = 100 * 100
    response = api.post("/v1/files", files={"content": ("big.png", png(200, 200), "image/png")})

    assert response.status_code == 422 and "the largest allowed is 100 x 100 pixels" in response.json()["detail"]
    assert not File.objects.exists()


def test_too_large_is_413(api, settings):
    settings.UPLOAD_IMAGE_MAX_BYTES = 1024
    response = api.post("/v1/files", files={"content": ("big.png", png(400, 400, (1, 2, 3)) + b"\0" * 2048)})

    assert response.status_code == 413
    assert response.json()["detail"] == "Files must be at most 1,024 bytes."
    assert not File.objects.exists()


@pytest.mark.parametrize(
    "request_kwargs, field",
    [
        ({"json": {"content": "aGVsbG8="}}, "content"),
        ({"files": {"content": ("a.png", png())}, "data": {"metadata": "{not json"}}, "metadata"),
        ({"files": {"content": ("a.png", png())}, "data": {"metadata": "[1, 2]"}}, "metadata"),
        ({"files": {"content": ("a.png", png())}, "data": {"metadata": '{"a": "\\u0000"}'}}, "metadata"),
        ({"files": {"content": ("a.png", png())}, "data": {"filename": "x" * 256}}, "filename"),
    ],
)
def test_bad_forms_name_the_field(api, request_kwargs, field):
    response = api.post("/v1/files", **request_kwargs)

    assert response.status_code == 422, response.text
    assert [f["field"] for f in response.json()["invalid_fields"]] == [field]
    assert not File.objects.exists()


def test_the_type_and_filename_fields_and_a_metadata_part_are_read(api):
    response = api.post(
        "/v1/files",
        files={
            "content": ("blob", png(), "application/octet-stream"),
            "metadata": ("blob", json.dumps({"k": "v"}).encode(), "application/json"),
        },
        data={"filename": "named.png", "type": "image/png"},
    )

    assert response.status_code == 201, response.text
    body = response.json()
    # Told by its bytes, whatever the client called it.
    assert body["name"] == "named.png" and body["content_type"] == "image/png" and body["metadata"] == {"k": "v"}
    assert response.headers["Location"] == body["urls"]["get"]


def test_an_expired_file_is_gone_and_swept(client, api, photo, cog_version):
    from tasks.reconciler import reconcile

    created = client.files.create(photo)
    found = File.objects.get()
    File.objects.filter(pk=found.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    assert api.get(f"/v1/files/{created.id}").status_code == 404
    response = api.post(
        "/v1/predictions", json={"version": cog_version.id, "input": {"prompt": "x", "image": created.urls["get"]}}
    )
    assert response.status_code == 422 and "has expired" in response.json()["detail"]

    reconcile()
    assert not File.objects.exists() and not _stored(found)


def test_a_file_input_reaches_replicate_as_a_data_uri(worker, sdxl, client, replicate_cloud):
    created = client.files.create(_named(png(48, 32), "start.png"))

    prediction = client.predictions.create(
        version=sdxl.id, input={"prompt": "a cat", "image": created.urls["get"], "prompt_strength": 0.5}
    )
    done = wait_for_status(prediction.id)

    assert done.status == "succeeded", done.error
    sent = next(r for r in replicate_cloud.requests if r.method == "POST" and r.path == "/v1/predictions")
    assert sent.json["input"]["image"].startswith("data:image/png;base64,")
    # The stand-in's img2img takes the size of the image it was given.
    assert (done.outputs.get().width, done.outputs.get().height) == (48, 32)


def _named(data, name):
    handle = io.BytesIO(data)
    handle.name = name
    return handle


def test_a_deleted_account_takes_its_files_with_it(client, alice, photo):
    client.files.create(photo)
    found = File.objects.get()

    alice.delete()

    assert not File.objects.exists() and not _stored(found)


def test_a_user_holds_at_most_so_many_files(client, api, settings):
    settings.FILES_PER_USER = 2
    for index in range(2):
        client.files.create(_named(png(), f"{index}.png"))

    response = api.post("/v1/files", files={"content": ("third.png", png())})

    assert response.status_code == 403 and "You hold 2 files" in response.json()["detail"]
    assert File.objects.count() == 2
    client.files.delete(File.objects.first().id)
    assert api.post("/v1/files", files={"content": ("third.png", png())}).status_code == 201
