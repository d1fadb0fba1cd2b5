"""/v1's own endpoints for prompt sets and benchmark runs: shapes, errors
(RFC 7807, per field), access, and their marks in /v1/openapi.json."""

import json

import pytest

from app.models import ApiToken, BenchmarkRun, Comparison, PromptSet
from app.services import benchmarks, prompt_sets

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def v1(client, alice):
    token = ApiToken.issue(alice)[1]

    def call(method, path, body=None, **headers):
        data = body if isinstance(body, (bytes, str)) else json.dumps(body) if body is not None else None
        return getattr(client, method)(
            path, data=data, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}", **headers
        )

    return call


def ref(version):
    return f"{version.model}:{version.pk}"


def test_prompt_sets_are_listed_with_licences_and_categories(v1):
    response = v1("get", "/v1/prompt-sets")
    assert response.status_code == 200
    found = {row["slug"]: row for row in response.json()["results"]}
    assert found["partiprompts"]["prompt_count"] == 1632 and found["partiprompts"]["license"] == "Apache-2.0"
    assert len(found["partiprompts"]["categories"]) == 12
    assert found["geneval"]["prompt_count"] == 553 and found["geneval"]["shipped"] is True


def test_a_user_adds_a_set_and_bad_ones_get_problems(v1, alice):
    made = v1(
        "post", "/v1/prompt-sets", {"name": "Mine", "prompts": ["a fox", {"prompt": "a cat", "category": "pets"}]}
    )
    assert made.status_code == 201
    assert made.json()["prompt_count"] == 2 and made.json()["shipped"] is False
    for body, field in [
        ({"name": "x", "prompts": []}, "prompts"),
        ({"name": "x", "prompts": "a fox"}, "prompts"),
        ({"name": "x", "prompts": [1]}, "prompts"),
        ({"name": "x", "prompts": [""]}, "prompts"),
        ({"name": "x", "prompts": ["a" * 1001]}, "prompts"),
        ({"name": "x", "prompts": ["bell\u0007"]}, "prompts"),
        ({"name": "", "prompts": ["a fox"]}, "name"),
        ({"prompts": ["p"] * 2001, "name": "x"}, "prompts"),
    ]:
        response = v1("post", "/v1/prompt-sets", body)
        assert response.status_code == 422, body
        assert response["Content-Type"] == "application/problem+json"
        assert field in {f["field"] for f in response.json()["invalid_fields"]}
    assert v1("post", "/v1/prompt-sets", b"{not json").status_code == 400
    assert PromptSet.objects.filter(owner=alice).count() == 1


def test_create_read_list_stop_and_resume_a_run(v1, alice, versions, queued_tasks, queued):
    body = {
        "prompt_set": "geneval",
        "category": "colors",
        "sample_size": 5,
        "sample_seed": 1,
        "seeds": [7, 8],
        "versions": [ref(v) for v in versions],
        "input": {"num_inference_steps": 2, "not_a_field": 1},
        "title": "CI run",
    }
    created = v1("post", "/v1/benchmarks", body)
    assert created.status_code == 201, created.content
    run = created.json()
    assert run["status"] == "running" and run["progress"]["planned_predictions"] == 20
    assert run["input"] == {"num_inference_steps": 2} and run["category"] == "colors"
    assert created["Location"].endswith(f"/v1/benchmarks/{run['id']}")
    assert queued_tasks["materialise"] == [(run["id"],)]

    benchmarks.materialise(run["id"])
    got = v1("get", f"/v1/benchmarks/{run['id']}").json()
    assert got["progress"]["started_comparisons"] == 10 and got["progress"]["active"] == 20
    assert [row["version"] for row in got["summary"]] == sorted(ref(v) for v in versions)

    predictions = v1("get", f"/v1/benchmarks/{run['id']}/predictions").json()
    assert len(predictions["results"]) == 20
    first = predictions["results"][0]
    assert first["benchmark"]["category"] == "colors" and first["benchmark"]["seed"] in (7, 8)
    assert first["input"]["seed"] == first["benchmark"]["seed"]

    listed = v1("get", "/v1/benchmarks").json()
    assert [item["id"] for item in listed["results"]] == [run["id"]]

    stopped = v1("post", f"/v1/benchmarks/{run['id']}/stop").json()
    assert stopped["status"] == "stopped" and stopped["progress"]["canceled"] == 20
    resumed = v1("post", f"/v1/benchmarks/{run['id']}/resume").json()
    assert resumed["status"] in ("running", "finished")
    assert queued_tasks["materialise"][-1] == (run["id"], True)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"prompt_set": "nope"}, "prompt_set"),
        ({"prompt_set": 10**30}, "prompt_set"),
        ({"versions": []}, "versions"),
        ({"versions": ["local/none:abc"]}, "versions"),
        ({"versions": "x"}, "versions"),
        ({"category": "nope"}, "category"),
        ({"category": ["x"]}, "category"),
        ({"sample_size": "5"}, "sample_size"),
        ({"sample_size": 0}, "sample_size"),
        ({"seeds": [1, "2"]}, "seeds"),
        ({"seeds": list(range(17))}, "seeds"),
        ({"seed_count": True}, "seed_count"),
        ({"visibility": "everyone"}, "visibility"),
        ({"input": []}, "input"),
        ({"title": "t" * 201}, "title"),
        ({"seeds": None, "seed_count": 1, "sample_size": None}, "sample_size"),  # 553 x 2 versions past the cap
    ],
)
def test_bad_runs_get_a_problem_per_field_and_nothing_is_saved(v1, versions, queued_tasks, settings, change, field):
    settings.BENCHMARK_MAX_PREDICTIONS = 1000
    body = {"prompt_set": "geneval", "versions": [ref(v) for v in versions], "seeds": [1], "sample_size": 3, **change}
    response = v1("post", "/v1/benchmarks", body)
    assert response.status_code == 422, response.content
    assert field in {f["field"] for f in response.json()["invalid_fields"]}
    assert not BenchmarkRun.objects.exists()


def test_others_runs_are_not_found_and_cannot_be_stopped(v1, bob, versions, queued_tasks):
    prompt_sets.ensure_shipped()
    geneval = PromptSet.objects.get(slug="geneval", owner=None)
    private = benchmarks.create(bob, geneval, versions, sample_size=2, seeds=[1], visibility="private")
    shared = benchmarks.create(bob, geneval, versions, sample_size=2, seeds=[1])
    assert v1("get", f"/v1/benchmarks/{private.pk}").status_code == 404
    assert v1("get", f"/v1/benchmarks/{shared.pk}").status_code == 200
    assert v1("post", f"/v1/benchmarks/{shared.pk}/stop").status_code == 404
    assert v1("get", "/v1/benchmarks/nope%00").status_code == 404
    assert v1("get", "/v1/benchmarks").json()["results"] == []
    shared.hide("reported")
    assert v1("get", f"/v1/benchmarks/{shared.pk}").status_code == 410
    assert v1("get", "/v1/benchmarks?cursor=forged").status_code == 400
    assert not Comparison.objects.exists()


def test_the_openapi_document_marks_them_as_lightbox_s_own(client, transactional_db):
    paths = client.get("/v1/openapi.json").json()["paths"]
    ours = {
        ("/v1/prompt-sets", "get"),
        ("/v1/prompt-sets", "post"),
        ("/v1/benchmarks", "get"),
        ("/v1/benchmarks", "post"),
        ("/v1/benchmarks/{run_id}", "get"),
        ("/v1/benchmarks/{run_id}/predictions", "get"),
        ("/v1/benchmarks/{run_id}/stop", "post"),
        ("/v1/benchmarks/{run_id}/resume", "post"),
    }
    for path, method in ours:
        operation = paths[path][method]
        assert operation["tags"] == ["lightbox"] and operation["x-lightbox"] is True
    assert "x-lightbox" not in paths["/v1/predictions"]["post"]
