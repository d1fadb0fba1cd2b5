"""/v1's models (list, create, update, delete, versions delete, README,
examples), account, hardware and collections, through the official Python
client (1.0.7) where it has the method, plain HTTP where it has not."""

import httpx
import pytest
import replicate
from django.core.files.storage import default_storage

from app.core.schema import InputError
from app.models import Collection, Model, Output, Prediction, Version
from app.services import catalog, predictions
from tests.conftest import wait_for_status

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_create_get_and_list(client, bob_client, cog_version):
    created = client.models.create(
        owner="alice", name="hot-dog", visibility="private", hardware="cpu", description="Finds hot dogs"
    )

    assert (created.owner, created.name, created.visibility) == ("alice", "hot-dog", "private")
    assert created.description == "Finds hot dogs" and created.run_count == 0 and created.latest_version is None
    fetched = client.models.get("alice/hot-dog")
    assert fetched.url.endswith("/models/alice/hot-dog") and fetched.visibility == "private"
    listed = {f"{m.owner}/{m.name}" for m in client.models.list().results}
    assert {"alice/hot-dog", "local/test-model"} <= listed
    # A private model is its owner's only.
    assert "alice/hot-dog" not in {f"{m.owner}/{m.name}" for m in bob_client.models.list().results}
    with pytest.raises(replicate.exceptions.ReplicateError) as caught:
        bob_client.models.get("alice/hot-dog")
    assert caught.value.status == 404


def test_list_pages_and_paginate_walks_them(client, monkeypatch):
    from app.views import api as api_views

    monkeypatch.setattr(api_views, "PAGE_SIZE", 2)
    for index in range(5):
        client.models.create(owner="alice", name=f"model-{index}", visibility="public", hardware="gpu-t4")

    first = client.models.list()
    assert len(first.results) == 2 and first.next
    walked = [m.name for page in replicate.pagination.paginate(client.models.list) for m in page]
    assert walked == [f"model-{index}" for index in range(4, -1, -1)]


@pytest.mark.parametrize(
    "body, status, field",
    [
        ({"owner": "bob", "name": "x", "visibility": "public", "hardware": "cpu"}, 403, None),
        ({"owner": "alice", "name": "x", "visibility": "secret", "hardware": "cpu"}, 422, "visibility"),
        ({"owner": "alice", "name": "x", "visibility": "public", "hardware": "tpu-v5"}, 422, "hardware"),
        ({"owner": "alice", "name": "Not A Slug", "visibility": "public", "hardware": "cpu"}, 422, "name"),
        ({"owner": "alice", "visibility": "public", "hardware": "cpu"}, 422, "name"),
        (
            {"owner": "alice", "name": "x", "visibility": "public", "hardware": "cpu", "paper_url": "ftp://x"},
            422,
            "paper_url",
        ),
        ({"owner": "alice", "name": "x", "visibility": "public", "hardware": "cpu", "colour": "red"}, 422, "colour"),
    ],
)
def test_create_refuses_with_a_reason_and_makes_nothing(api, body, status, field):
    response = api.post("/v1/models", json=body)

    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    if field:
        assert [f["field"] for f in response.json()["invalid_fields"]] == [field]
    assert not Model.objects.filter(name="x").exists()


def test_a_name_taken_is_409_and_the_catalogs_owner_names_are_not_yours(client, api, cog_version, alice):
    client.models.create(owner="alice", name="mine", visibility="public", hardware="cpu")
    with pytest.raises(replicate.exceptions.ReplicateError) as caught:
        client.models.create(owner="alice", name="mine", visibility="public", hardware="cpu")
    assert caught.value.status == 409

    alice.username = "local"  # the catalog's owner name
    alice.save()
    response = api.post("/v1/models", json={"owner": "local", "name": "x", "visibility": "public", "hardware": "cpu"})
    assert response.status_code == 403 and "catalog" in response.json()["detail"]


def test_update_the_readme_and_urls(client, api, bob_api):
    client.models.create(owner="alice", name="mine", visibility="public", hardware="cpu")

    response = api.patch(
        "/v1/models/alice/mine",
        json={"description": "Better", "readme": "# Mine\n\nIt draws.", "github_url": "https://github.com/a/m"},
    )

    assert response.status_code == 200, response.text
    assert response.json()["description"] == "Better" and response.json()["github_url"] == "https://github.com/a/m"
    readme = api.get("/v1/models/alice/mine/readme")
    assert readme.text == "# Mine\n\nIt draws." and readme.headers["Content-Type"].startswith("text/markdown")
    refused = bob_api.patch("/v1/models/alice/mine", json={"description": "Mine now"})
    assert refused.status_code == 403
    bad = api.patch("/v1/models/alice/mine", json={"visibility": "private"})
    assert bad.status_code == 422 and bad.json()["invalid_fields"][0]["field"] == "visibility"
    assert Model.objects.get(name="mine").description == "Better"
    assert api.get("/v1/models/local/test-model/readme").status_code == 404


def test_delete_is_refused_while_versions_exist_then_versions_go_with_their_predictions(
    worker, client, cog_server, alice, bob_api
):
    client.models.create(owner="alice", name="mine", visibility="public", hardware="cpu")
    version = catalog.import_version(cog_server.url, "alice/mine")
    catalog.refresh_availability(version, max_age=0)
    done = client.predictions.create(version=version.id, input={"prompt": "a lighthouse"})
    done = wait_for_status(done.id)
    stored = done.outputs.get().file.name

    with pytest.raises(replicate.exceptions.ReplicateError) as caught:
        client.models.delete("alice/mine")
    assert caught.value.status == 409 and "versions" in caught.value.detail
    assert bob_api.delete(f"/v1/models/alice/mine/versions/{version.id}").status_code == 403

    assert client.models.get("alice/mine").versions.delete(version.id) is True
    assert not Version.objects.filter(pk=version.pk).exists() and not Prediction.objects.exists()
    assert not Output.objects.exists()
    assert not default_storage.exists(stored)
    assert client.models.delete("alice/mine") is True
    assert not Model.objects.filter(name="mine").exists()


def test_a_version_others_ran_stays(worker, client, cog_server, bob, bob_api):
    client.models.create(owner="alice", name="mine", visibility="public", hardware="cpu")
    version = catalog.import_version(cog_server.url, "alice/mine")
    catalog.refresh_availability(version, max_age=0)
    wait_for_status(predictions.start(version, {"prompt": "bob's"}, owner=bob).id)

    with pytest.raises(replicate.exceptions.ReplicateError) as caught:
        client.models.get("alice/mine").versions.delete(version.id)

    assert caught.value.status == 409 and "Others" in caught.value.detail
    assert Version.objects.filter(pk=version.pk).exists() and Prediction.objects.count() == 1


def test_examples_are_the_owners_public_predictions(worker, client, cog_server, alice):
    client.models.create(owner="alice", name="mine", visibility="public", hardware="cpu")
    version = catalog.import_version(cog_server.url, "alice/mine")
    catalog.refresh_availability(version, max_age=0)
    shown = wait_for_status(predictions.start(version, {"prompt": "shown"}, owner=alice, visibility="public").id)
    wait_for_status(predictions.start(version, {"prompt": "private"}, owner=alice, visibility="private").id)

    examples = client._request("GET", "/v1/models/alice/mine/examples").json()

    assert [p["id"] for p in examples["results"]] == [shown.id]
    assert client.models.get("alice/mine").default_example.id == shown.id


def test_account_hardware_and_collections(client, bob_client, cog_version, bob):
    account = client.accounts.current()
    assert (account.type, account.username) == ("user", "alice")

    listed = [(hardware.sku, hardware.name) for hardware in client.hardware.list()]
    assert listed[:2] == [("cpu", "CPU"), ("gpu-t4", "Nvidia T4 GPU")] and len(listed) == 6

    curated = Collection.objects.create(slug="favourites", name="Favourites", description="Staff picks")
    cog_version.model.collections.add(curated)
    bob_client.models.create(owner="bob", name="secret", visibility="private", hardware="cpu")
    Model.objects.get(name="secret").collections.add(curated)

    slugs = [collection.slug for collection in client.collections.list()]
    assert slugs == ["text-to-image", "favourites"]
    text_to_image = client.collections.get("text-to-image")
    assert "local/test-model" in [f"{m.owner}/{m.name}" for m in text_to_image.models]
    assert [f"{m.owner}/{m.name}" for m in client.collections.get("favourites").models] == ["local/test-model"]
    assert len(bob_client.collections.get("favourites").models) == 2
    with pytest.raises(replicate.exceptions.ReplicateError) as caught:
        client.collections.get("nothing-here")
    assert (
        caught.value.status == 404 and caught.value.detail == "Collection nothing-here does not exist or is not yours."
    )


def test_a_private_model_of_another_cannot_be_run(bob_api, bob, client, cog_server, queued):
    client.models.create(owner="alice", name="mine", visibility="private", hardware="cpu")
    version = catalog.import_version(cog_server.url, "alice/mine")

    by_version = bob_api.post("/v1/predictions", json={"version": version.id, "input": {"prompt": "x"}})
    by_model = bob_api.post("/v1/models/alice/mine/predictions", json={"input": {"prompt": "x"}})

    assert by_version.status_code == 404 and by_model.status_code == 404
    with pytest.raises(InputError) as caught:
        predictions.start(version, {"prompt": "x"}, owner=bob)  # the rule itself, for the pages too
    assert caught.value.errors == {"version": ["alice/mine is a private model of another account."]}
    assert not Prediction.objects.exists()


def test_the_models_pages_keep_a_private_model_to_its_owner(site, client):
    client.models.create(owner="alice", name="secret", visibility="private", hardware="cpu")
    client.models.create(owner="alice", name="shown", visibility="public", hardware="cpu")

    listing = httpx.get(site.url + "/models")

    assert "alice/shown" in listing.text and "alice/secret" not in listing.text
    assert httpx.get(site.url + "/models/alice/secret").status_code == 404


def test_the_clients_other_methods(worker, client, cog_version, alice):
    from app.services.api_json import webhook_secret

    assert [v.id for v in client.models.get("local/test-model").versions.list()] == [cog_version.id]
    first = client.models.predictions.create("local/test-model", input={"prompt": "a"}, wait=True)
    second = client.predictions.create(version=cog_version.id, input={"prompt": "b"})
    second.wait()
    walked = [p.id for page in replicate.pagination.paginate(client.predictions.list) for p in page]

    assert first.status == "succeeded" and second.status == "succeeded"
    assert walked == [second.id, first.id]
    assert client.webhooks.default.secret().key == webhook_secret(alice)


def test_staff_cannot_make_a_collection_that_shadows_a_built_in_one():
    from app.admin import CollectionForm

    form = CollectionForm(data={"slug": "text-to-image", "name": "Mine", "description": "x"})

    assert not form.is_valid() and "Lightbox makes itself" in form.errors["slug"][0]
    assert CollectionForm(data={"slug": "picks", "name": "Picks", "description": "x"}).is_valid()
