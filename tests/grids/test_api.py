"""/v1/grids: Lightbox's own endpoints, RFC 7807 errors, marked in openapi.json."""

import pytest
from django.test import Client

from app.models import ApiToken, Grid, Prediction
from app.services import grids


@pytest.fixture(autouse=True)
def _recorded(queued, grid_tasks):
    return queued


@pytest.fixture
def v1(alice):
    return Client(headers={"Authorization": f"Bearer {ApiToken.issue(alice)[1]}"})


def create(v1, **body):
    return v1.post("/v1/grids", body, content_type="application/json")


def test_create_read_list_predictions_and_cancel(v1, sd_version, grid_tasks):
    response = create(
        v1,
        versions=[f"local/tiny-sd:{sd_version.id}"],
        input={"prompt": "a red fox"},
        axes=[
            {"kind": "field", "field": "num_inference_steps", "values": [1, 2]},
            {"kind": "prompt", "values": "fox|owl"},
        ],
        seed=3,
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["cells"] == 4 and body["status"] == "running" and body["axes"][1]["values"] == ["fox", "owl"]
    assert grid_tasks == [body["id"]]
    grids.materialise(body["id"])
    got = v1.get(f"/v1/grids/{body['id']}").json()
    assert got["counts"]["started"] == 4
    listed = v1.get("/v1/grids").json()
    assert [g["id"] for g in listed["results"]] == [body["id"]]
    cells = v1.get(body["urls"]["predictions"]).json()["results"]
    assert sorted((c["cell"]["x"], c["cell"]["y"]) for c in cells) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert {c["input"]["prompt"] for c in cells} == {"a red fox", "a red owl"}
    canceled = v1.post(f"/v1/grids/{body['id']}/cancel").json()
    assert canceled["status"] == "canceled" and canceled["counts"]["canceled"] == 4


@pytest.mark.parametrize(
    "body, field",
    [
        ({"versions": [], "input": {}, "axes": []}, "versions"),
        ({"versions": ["nope"], "input": {}, "axes": []}, "versions"),
        ({"input": "x", "axes": []}, "input"),
        ({"input": {"prompt": "p"}, "axes": "x"}, "axes"),
        ({"input": {"prompt": "p"}, "axes": [7]}, "axes[0]"),
        ({"input": {"prompt": "p"}, "axes": [{"kind": "field", "field": "width", "values": "1-99999 (+1)"}]}, "axis_x"),
        ({"input": {"prompt": "p"}, "axes": [{"kind": "field", "field": {"a": 1}}]}, "axes[0]"),
        ({"input": {"prompt": "p"}, "axes": [{"kind": "seed", "values": "1"}], "seed": -4}, "seed"),
        ({"input": {"prompt": "p"}, "axes": [{"kind": "seed", "values": "1"}], "visibility": "everyone"}, "visibility"),
        ({"input": {"prompt": "p\x00"}, "axes": [{"kind": "seed", "values": "1"}]}, "input"),
    ],
)
def test_bad_requests_are_422_problems_naming_the_field(v1, sd_version, body, field):
    body.setdefault("versions", [sd_version.id])
    response = create(v1, **body)
    assert response.status_code == 422 and response["Content-Type"] == "application/problem+json"
    assert field in [f["field"] for f in response.json()["invalid_fields"]]
    assert not Grid.objects.exists()


def test_past_the_cap_and_past_the_quota(v1, sd_version, settings):
    settings.GRID_MAX_CELLS = 5
    body = {"versions": [sd_version.id], "input": {"prompt": "p"}, "axes": [{"kind": "seed", "values": "1-6"}]}
    assert "at most 5" in create(v1, **body).json()["detail"]
    settings.GRID_MAX_CELLS, settings.DAILY_QUOTA = 1000, 3
    refused = create(v1, **body)
    assert refused.status_code == 429 and "3 of your 3 left today" in refused.json()["detail"]


def test_others_grids_are_404_unless_shared(v1, bob, sd_version):
    theirs = grids.create(bob, [sd_version], {"prompt": "p"}, [{"kind": "seed", "text": "1, 2"}], visibility="private")
    assert v1.get(f"/v1/grids/{theirs.pk}").status_code == 404
    assert v1.post(f"/v1/grids/{theirs.pk}/cancel").status_code == 404
    grids.set_visibility(theirs, "unlisted")
    assert v1.get(f"/v1/grids/{theirs.pk}").status_code == 200
    assert v1.post(f"/v1/grids/{theirs.pk}/cancel").status_code == 404
    assert not Prediction.objects.filter(status="canceled").exists()


def test_openapi_marks_the_grid_operations_as_lightbox_s_own(v1):
    document = v1.get("/v1/openapi.json").json()
    operations = [
        op
        for path, item in document["paths"].items()
        if path.startswith("/v1/grids") and not path.endswith("/bundle")
        for op in item.values()
    ]
    assert len(operations) == 5
    assert all(op["tags"] == ["lightbox"] and op["x-lightbox"] is True for op in operations)
    # Replicate's own operations stay as Replicate's clients know them.
    assert not any(op.get("x-lightbox") for op in document["paths"]["/v1/predictions"].values())
