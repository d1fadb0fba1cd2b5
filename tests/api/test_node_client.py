"""The official Node client (npm `replicate` 1.4.0, run by `node`) against
Lightbox's /v1: every client method that maps to an endpoint Lightbox has,
except deployments'."""

import pytest

from app.models import File, Model, Prediction
from tests.api.clients import png, run_node

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def node(site, alice_token):
    return lambda body: run_node(site.url, alice_token, body)


def test_run_with_a_buffer_input_uploads_it_and_the_model_reads_it(worker, cog_version, node, tmp_path):
    (tmp_path / "photo.png").write_bytes(png(40, 24))

    output = node(f"""
        const image = fs.readFileSync({str(tmp_path / "photo.png")!r});
        return await replicate.run("local/test-model", {{input: {{prompt: "a lighthouse", image}}}});
    """)

    assert len(output) == 1 and output[0].endswith("/0.png")
    prediction = Prediction.objects.get()
    assert prediction.status == "succeeded", prediction.error
    assert "image 40x24" in prediction.logs
    # Uploaded first, as the client does by default, and read from storage here.
    assert File.objects.get().owner.username == "alice"


def test_files_create_list_get_and_delete(node, tmp_path):
    (tmp_path / "photo.png").write_bytes(png(40, 24))

    result = node(f"""
        const created = await replicate.files.create(fs.readFileSync({str(tmp_path / "photo.png")!r}), {{ref: 7}});
        const listed = await replicate.files.list();
        const got = await replicate.files.get(created.id);
        const deleted = await replicate.files.delete(created.id);
        let after;
        try {{ await replicate.files.get(created.id); }} catch (error) {{ after = error.response.status; }}
        return {{created, listed: listed.results.map((f) => f.id), got, deleted, after}};
    """)

    created = result["created"]
    assert created["content_type"] == "image/png" and created["metadata"] == {"ref": 7}
    assert created["urls"]["get"].endswith(f"/v1/files/{created['id']}")
    assert result["listed"] == [created["id"]] and result["got"]["checksums"] == created["checksums"]
    assert result["deleted"] is True and result["after"] == 404
    assert not File.objects.exists()


def test_predictions_create_wait_get_list_paginate_cancel_and_the_webhook_secret(worker, cog_version, node, alice):
    from app.services.api_json import webhook_secret

    result = node(f"""
        const created = await replicate.predictions.create({{version: {cog_version.id!r}, input: {{prompt: "a"}}}});
        const done = await replicate.wait(created, {{interval: 100}});
        const got = await replicate.predictions.get(created.id);
        const second = await replicate.predictions.create({{model: "local/test-model", input: {{prompt: "b"}}, wait: true}});
        const pages = [];
        for await (const page of replicate.paginate(replicate.predictions.list)) pages.push(page.map((p) => p.id));
        const slow = await replicate.predictions.create({{version: {cog_version.id!r},
            input: {{prompt: "slow", step_delay: 0.5, num_inference_steps: 20}}}});
        const canceled = await replicate.predictions.cancel(slow.id);
        const secret = await replicate.webhooks.default.secret.get();
        return {{done: done.status, output: got.output, second: second.status, ids: [created.id, second.id], pages,
                 canceled: canceled.status, secret: secret.key}};
    """)

    assert result["done"] == "succeeded" and len(result["output"]) == 1
    assert result["second"] == "succeeded"
    assert result["pages"] == [result["ids"][::-1]]
    assert result["canceled"] == "canceled" and Prediction.objects.get(status="canceled").input["prompt"] == "slow"
    assert result["secret"] == webhook_secret(alice)


def test_models_list_get_create_and_versions(cog_version, node, monkeypatch):
    from app.views import api as api_views

    monkeypatch.setattr(api_views, "PAGE_SIZE", 1)
    result = node(f"""
        const created = await replicate.models.create("alice", "hot-dog", {{visibility: "private", hardware: "gpu-t4",
            description: "Finds hot dogs"}});
        const got = await replicate.models.get("local", "test-model");
        const first = await replicate.models.list();
        const names = [];
        for await (const page of replicate.paginate(replicate.models.list)) names.push(...page.map((m) => m.name));
        const versions = await replicate.models.versions.list("local", "test-model");
        const version = await replicate.models.versions.get("local", "test-model", {cog_version.id!r});
        return {{created, got, first: first.results.length, next: first.next, names, versions: versions.results.length,
                 version: version.id}};
    """)

    assert result["created"]["visibility"] == "private" and result["created"]["description"] == "Finds hot dogs"
    assert Model.objects.get(name="hot-dog").user.username == "alice"
    assert result["got"]["latest_version"]["id"] == cog_version.id
    assert result["first"] == 1 and result["next"]
    assert sorted(result["names"]) == ["hot-dog", "test-model"]
    assert result["versions"] == 1 and result["version"] == cog_version.id


def test_account_hardware_and_collections(cog_version, node):
    result = node("""
        const account = await replicate.accounts.current();
        const hardware = await replicate.hardware.list();
        const collections = await replicate.collections.list();
        const textToImage = await replicate.collections.get("text-to-image");
        return {account, hardware, collections: collections.results.map((c) => c.slug),
                models: textToImage.models.map((m) => `${m.owner}/${m.name}`)};
    """)

    assert result["account"] == {"type": "user", "username": "alice", "name": "alice", "github_url": None}
    assert result["hardware"][0] == {"sku": "cpu", "name": "CPU"} and len(result["hardware"]) == 6
    assert result["collections"] == ["text-to-image"]
    assert result["models"] == ["local/test-model"]


def test_errors_are_api_errors_with_the_status_and_problem(cog_version, node, site, bob_token):
    result = node(f"""
        await replicate.predictions.create({{version: {cog_version.id!r}, input: {{prompt: "x", width: 5000}}}});
    """)

    error = result["error"]
    assert error["name"] == "ApiError" and error["status"] == 422
    assert error["problem"]["status"] == 422 and "width" in error["problem"]["detail"]
    assert not Prediction.objects.exists()

    unauthenticated = run_node(site.url, "lb_not_a_token", "await replicate.accounts.current();")["error"]
    assert unauthenticated["status"] == 401 and unauthenticated["problem"]["title"] == "Unauthenticated"

    missing = run_node(site.url, bob_token, 'await replicate.models.get("nobody", "nothing");')["error"]
    assert (
        missing["status"] == 404
        and missing["problem"]["detail"] == "Model nobody/nothing does not exist or is not yours."
    )
