"""/v1/comparisons: Lightbox's own operations for scripts (create a comparison,
read it, list comparisons and a comparison's predictions), marked as such in
/v1/openapi.json, beside Replicate's operations that its clients still use."""

import json

import pytest

from app.models import Comparison, Prediction
from app.views import api as api_views
from tests.conftest import wait_for_status

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def two_versions(cog_version, sdxl):
    """Our Cog server's model and SDXL on Replicate (its stand-in)."""
    return [cog_version, sdxl]


@pytest.mark.e2e
def test_a_script_creates_a_comparison_and_fetches_its_results(worker, api, two_versions):
    response = api.post(
        "/v1/comparisons",
        json={"versions": [f"{v.model}:{v.id}" for v in two_versions], "input": {"prompt": "a red fox"}, "seed": 42},
    )

    assert response.status_code == 201, response.text
    created = response.json()
    assert response.headers["Location"] == created["urls"]["get"]
    assert created["seed"] == 42 and created["input"] == {"prompt": "a red fox"}
    assert sorted(p["version"] for p in created["predictions"]) == sorted(v.id for v in two_versions)
    assert {p["input"]["seed"] for p in created["predictions"]} == {42}
    for prediction in created["predictions"]:
        assert wait_for_status(prediction["id"]).status == "succeeded"

    done = api.get(created["urls"]["get"]).json()
    assert {p["status"] for p in done["predictions"]} == {"succeeded"}
    assert all(len(p["output"]) == 1 for p in done["predictions"])
    image = api.get(done["predictions"][0]["output"][0])
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")

    listed = api.get(created["urls"]["predictions"]).json()
    assert sorted(p["id"] for p in listed["results"]) == sorted(p["id"] for p in created["predictions"])
    assert listed["next"] is None


def test_comparisons_are_listed_newest_first_a_page_at_a_time(api, cog_version, queued, settings, monkeypatch):
    settings.RATE_LIMIT_PER_MINUTE = None
    monkeypatch.setattr(api_views, "PAGE_SIZE", 2)
    ids = [
        api.post("/v1/comparisons", json={"versions": [cog_version.id], "input": {"prompt": f"n{i}"}}).json()["id"]
        for i in range(3)
    ]

    first = api.get("/v1/comparisons").json()

    assert [c["id"] for c in first["results"]] == ids[::-1][:2]
    assert first["results"][0]["predictions"][0]["input"]["prompt"] == "n2"
    rest = api.get(first["next"]).json()
    assert [c["id"] for c in rest["results"]] == ids[:1] and rest["next"] is None
    assert api.get("/v1/comparisons?cursor=garbage").status_code == 400


@pytest.mark.parametrize(
    "body, field",
    [
        ({"input": {"prompt": "x"}}, "versions"),
        ({"versions": "abc", "input": {"prompt": "x"}}, "versions"),
        ({"versions": [], "input": {}}, "versions"),
        ({"versions": ["nope"], "input": {"prompt": "x"}}, "versions.0"),
        ({"versions": [{"id": 1}], "input": {"prompt": "x"}}, "versions.0"),
        ({"versions": ["v"] * 11, "input": {"prompt": "x"}}, "versions"),
        ({"versions": ["VERSION"], "input": ["x"]}, "input"),
        ({"versions": ["VERSION"], "input": {"prompt": "x"}, "seed": -1}, "seed"),
        ({"versions": ["VERSION"], "input": {"prompt": "x"}, "seed": True}, "seed"),
        ({"versions": ["VERSION"], "input": {"prompt": "x"}, "seed": 2**40}, "seed"),
        ({"versions": ["VERSION"], "input": {"prompt": "x"}, "visibility": "everyone"}, "visibility"),
        ({"versions": ["VERSION"], "input": {"prompt": ["not", "text"]}}, "local/test-model"),
        ({"versions": ["VERSION"], "input": {"prompt": "a\ud800"}}, "input.prompt"),
    ],
)
def test_a_bad_create_is_a_422_naming_the_field_and_saves_nothing(api, cog_version, queued, body, field):
    body = {
        k: (
            [cog_version.id if v == "VERSION" else v for v in val] if k == "versions" and isinstance(val, list) else val
        )
        for k, val in body.items()
    }
    # json.dumps writes a lone surrogate as the "\ud800" escape hostile clients send.
    response = api.post("/v1/comparisons", content=json.dumps(body), headers={"Content-Type": "application/json"})

    assert response.status_code == 422, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    assert field in [f["field"] for f in response.json()["invalid_fields"]]
    assert not Comparison.objects.exists() and not Prediction.objects.exists()
    assert queued == []


@pytest.mark.parametrize("raw", [b"{", b"[1, 2]", b'"text"', b"\xff\xfe"])
def test_a_body_that_is_no_json_object_is_a_400(api, queued, raw):
    response = api.post("/v1/comparisons", content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and response.json()["status"] == 400
    assert not Comparison.objects.exists()


def test_a_refused_run_answers_the_limit_and_saves_nothing(api, alice, cog_version, queued, settings):
    settings.MAX_CONCURRENT = 1
    response = api.post("/v1/comparisons", json={"versions": [cog_version.id], "input": {"prompt": "one"}})
    assert response.status_code == 201
    response = api.post("/v1/comparisons", json={"versions": [cog_version.id], "input": {"prompt": "two"}})
    assert response.status_code == 429 and response.json()["title"] == "Too many predictions running"
    assert Comparison.objects.count() == 1


def test_others_private_comparisons_are_not_there(api, bob_api, cog_version, queued):
    created = api.post(
        "/v1/comparisons",
        json={"versions": [cog_version.id], "input": {"prompt": "mine"}, "visibility": "private"},
    ).json()
    for path in (created["urls"]["get"], created["urls"]["predictions"]):
        assert bob_api.get(path).status_code == 404
    assert bob_api.get("/v1/comparisons").json()["results"] == []
    shared = api.post(
        "/v1/comparisons", json={"versions": [cog_version.id], "input": {"prompt": "ours"}, "visibility": "unlisted"}
    ).json()
    assert bob_api.get(shared["urls"]["get"]).json()["id"] == shared["id"]
    assert bob_api.get("/v1/comparisons/%00").status_code == 404
    assert api.delete(shared["urls"]["get"]).status_code == 405


def test_the_document_marks_lightboxs_own_operations(api):
    document = api.get("/v1/openapi.json").json()
    own = {
        (path, method)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        if operation.get("x-lightbox") and path.startswith("/v1/comparisons") and not path.endswith("/bundle")
    }
    assert own == {
        ("/v1/comparisons", "get"),
        ("/v1/comparisons", "post"),
        ("/v1/comparisons/{comparison_id}", "get"),
        ("/v1/comparisons/{comparison_id}/predictions", "get"),
    }
    for path, method in own:
        assert document["paths"][path][method]["tags"] == ["lightbox"]
    # Replicate's operations are as Replicate's clients know them: untagged.
    assert "tags" not in document["paths"]["/v1/predictions"]["post"]
    assert "lightbox" in [tag["name"] for tag in document["tags"]]


@pytest.mark.e2e
def test_replicates_client_still_runs_beside_lightboxs_own_operations(worker, client, api, cog_version):
    created = api.post("/v1/comparisons", json={"versions": [cog_version.id], "input": {"prompt": "ours"}})
    assert created.status_code == 201

    output = client.run(f"local/test-model:{cog_version.id}", input={"prompt": "theirs"})

    assert len(output) == 1
    page = client.predictions.list()
    assert len(page.results) == 2  # the comparison's prediction is an ordinary prediction to it
