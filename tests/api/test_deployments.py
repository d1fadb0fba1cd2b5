"""/v1/deployments through the official client (replicate 1.0.7): create, get,
list, update, delete, and predictions on the deployment's pool; bad input
as RFC 7807 problems that change nothing."""

import httpx
import pytest
import replicate
from replicate.exceptions import ReplicateError

from app.models import Deployment, Prediction
from app.services import catalog, pools
from tests.conftest import COG_PREDICTOR_DIR, CogServer, wait_for_status

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def client(site, alice_token):
    return replicate.Client(api_token=alice_token, base_url=site.url)


@pytest.fixture(scope="module")
def second_server(site):
    server = CogServer(COG_PREDICTOR_DIR).uploading().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def pool_server(cog_server):
    """A second server of cog_version's pool: it uploads as that version's server."""
    server = CogServer(COG_PREDICTOR_DIR).uploading(cog_server.url).start()
    yield server
    server.stop()


def _create(client, version, name="image-maker", **extra):
    return client.deployments.create(
        name=name,
        model=str(version.model),
        version=version.id,
        hardware=extra.pop("hardware", "cpu"),
        min_instances=extra.pop("min_instances", 1),
        max_instances=extra.pop("max_instances", 2),
    )


def test_create_get_list_update_and_delete(cog_version, client, alice):
    created = _create(client, cog_version)

    assert (created.owner, created.name) == ("alice", "image-maker")
    release = created.current_release
    assert (release.number, release.model, release.version) == (1, "local/test-model", cog_version.id)
    assert (release.configuration.hardware, release.configuration.min_instances) == ("cpu", 1)
    assert release.configuration.max_instances == 2
    assert release.created_by.username == "alice"

    fetched = client.deployments.get("alice/image-maker")
    assert fetched.current_release.version == cog_version.id
    assert [d.name for d in client.deployments.list().results] == ["image-maker"]

    updated = client.deployments.update("alice", "image-maker", min_instances=0, max_instances=3, hardware="gpu-t4")
    assert updated.current_release.number == 2
    assert updated.current_release.configuration.max_instances == 3
    assert updated.current_release.configuration.hardware == "gpu-t4"

    assert client.deployments.delete("alice", "image-maker") is True
    assert not Deployment.objects.exists()
    with pytest.raises(ReplicateError) as missing:
        client.deployments.get("alice/image-maker")
    assert missing.value.status == 404


def test_the_list_is_paginated_newest_first(cog_version, client, settings, monkeypatch):
    from app.views import api

    monkeypatch.setattr(api, "PAGE_SIZE", 2)
    for index in range(5):
        _create(client, cog_version, name=f"d{index}")

    names = [d.name for page in replicate.paginate(client.deployments.list) for d in page]

    assert names == ["d4", "d3", "d2", "d1", "d0"]


def test_predictions_on_a_deployment_run_on_its_pool_with_wait(worker, cog_version, pool_server, client):
    pools.set_instances(cog_version, [cog_version.location, pool_server.url])
    deployment = _create(client, cog_version)

    prediction = deployment.predictions.create(input={"prompt": "a harbour", "seed": 3}, wait=True)
    through_namespace = client.deployments.predictions.create(
        "alice/image-maker", input={"prompt": "a harbour", "seed": 4}
    )
    through_namespace.wait()

    assert prediction.status == "succeeded" and len(prediction.output) == 1
    assert through_namespace.status == "succeeded", through_namespace.error
    stored = Prediction.objects.get(pk=prediction.id)
    assert stored.deployment.name == "image-maker" and stored.version == cog_version
    assert stored.instance.url in (cog_version.location, pool_server.url)


def test_predictions_take_the_same_input_checks_and_webhooks_as_predictions(cog_version, api):
    api.post("/v1/deployments", json=_body(cog_version))

    bad = api.post("/v1/deployments/alice/image-maker/predictions", json={"input": {"width": 5}})
    refused_hook = api.post(
        "/v1/deployments/alice/image-maker/predictions",
        json={"input": {"prompt": "x"}, "webhook": "http://10.0.0.1/hook"},
    )

    assert bad.status_code == 422
    assert bad.headers["Content-Type"] == "application/problem+json"
    fields = {f["field"] for f in bad.json()["invalid_fields"]}
    assert {"input.prompt", "input.width"} <= fields
    assert refused_hook.status_code == 422 and refused_hook.json()["invalid_fields"][0]["field"] == "webhook"
    assert not Prediction.objects.exists()


def _body(of, **changes):
    return {
        "name": "image-maker",
        "model": str(of.model),
        "version": of.id,
        "hardware": "cpu",
        "min_instances": 0,
        "max_instances": 1,
        **changes,
    }


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"name": "Not A Slug!"}, "name"),
        ({"model": "nobody/nothing"}, "model"),
        ({"model": "local/test\u0000model"}, "model"),
        ({"version": "f" * 64}, "version"),
        ({"hardware": "tpu-v9"}, "hardware"),
        ({"min_instances": 6}, "min_instances"),
        ({"max_instances": 0}, "max_instances"),
        ({"max_instances": "2"}, "max_instances"),
        ({"min_instances": 3, "max_instances": 2}, "min_instances"),
        ({"replicas": 3}, "replicas"),
    ],
)
def test_bad_fields_are_422_problems_and_create_nothing(cog_version, api, changes, field):
    response = api.post("/v1/deployments", json=_body(cog_version, **changes))

    assert response.status_code == 422
    assert response.headers["Content-Type"] == "application/problem+json"
    assert [f["field"] for f in response.json()["invalid_fields"]] == [field]
    assert not Deployment.objects.exists()


def test_missing_fields_and_a_taken_name_are_422(cog_version, api):
    missing = api.post("/v1/deployments", json={"name": "x"})
    assert missing.status_code == 422
    assert {f["field"] for f in missing.json()["invalid_fields"]} == {
        "model",
        "version",
        "hardware",
        "min_instances",
        "max_instances",
    }
    assert api.post("/v1/deployments", json=_body(cog_version)).status_code == 201
    taken = api.post("/v1/deployments", json=_body(cog_version))
    assert taken.status_code == 422 and taken.json()["invalid_fields"][0]["field"] == "name"
    assert Deployment.objects.count() == 1


def test_a_bad_update_changes_nothing(cog_version, api):
    api.post("/v1/deployments", json=_body(cog_version))

    for body in ({"version": "0" * 64}, {"min_instances": 2}, {"name": "renamed"}, {}):
        response = api.patch("/v1/deployments/alice/image-maker", json=body)
        assert response.status_code == 422, body
        assert response.headers["Content-Type"] == "application/problem+json"

    deployment = Deployment.objects.get()
    assert (deployment.release, deployment.version, deployment.min_instances) == (1, cog_version, 0)


def test_other_users_deployments_are_not_found(cog_version, api, site, bob):
    from app.models import ApiToken

    api.post("/v1/deployments", json=_body(cog_version))
    bob_headers = {"Authorization": f"Bearer {ApiToken.issue(bob)[1]}"}

    for method, path in [
        ("GET", "/v1/deployments/alice/image-maker"),
        ("PATCH", "/v1/deployments/alice/image-maker"),
        ("DELETE", "/v1/deployments/alice/image-maker"),
        ("POST", "/v1/deployments/alice/image-maker/predictions"),
    ]:
        response = httpx.request(method, site.url + path, headers=bob_headers, json={"input": {"prompt": "x"}})
        assert response.status_code == 404, (method, path)
    assert httpx.get(site.url + "/v1/deployments", headers=bob_headers).json()["results"] == []
    assert Deployment.objects.get().release == 1


def test_a_deployment_with_predictions_waiting_is_not_deleted(cog_version, api, queued):
    api.post("/v1/deployments", json=_body(cog_version))
    api.post("/v1/deployments/alice/image-maker/predictions", json={"input": {"prompt": "x"}})

    response = api.delete("/v1/deployments/alice/image-maker")

    assert response.status_code == 409
    assert "running or waiting" in response.json()["detail"]
    assert Deployment.objects.exists()


def test_update_rolls_out_a_new_version_without_losing_queued_predictions(
    worker, cog_version, second_server, client, alice
):
    new_version = catalog.import_version(second_server.url, "local/test-model")
    catalog.refresh_availability(new_version, max_age=0)
    assert new_version.id != cog_version.id
    deployment = _create(client, cog_version, max_instances=1)
    slow = {"prompt": "queued", "num_inference_steps": 2, "step_delay": 0.4}
    before = [deployment.predictions.create(input=slow) for _ in range(3)]

    updated = client.deployments.update("alice", "image-maker", version=new_version.id)
    after = [deployment.predictions.create(input=slow) for _ in range(2)]

    assert updated.current_release.number == 2 and updated.current_release.version == new_version.id
    # When the update came, at most one of the first three could be running:
    # the others were waiting in the queue, and still run.
    done = [wait_for_status(p.id, timeout=60) for p in before + after]
    assert [p.status for p in done] == ["succeeded"] * 5, [p.error for p in done]
    assert [p.version_id for p in done] == [cog_version.id] * 3 + [new_version.id] * 2
