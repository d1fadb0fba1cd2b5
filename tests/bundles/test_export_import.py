"""Export (pages and /v1) and import (upload page and /v1) of bundles, with
the predictions recorded instead of run (tests/engine has the real runs)."""

import copy
import hashlib

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.template.loader import render_to_string

from app.core import bundles
from app.models import (
    ApiToken,
    BenchmarkRun,
    Comparison,
    Grid,
    Prediction,
    Prompt,
    PromptSet,
    Reproduction,
    ReproductionItem,
    Version,
)
from app.services import bundles as bundle_service
from tests.bundles.conftest import unzip
from tests.web.conftest import SCHEMA, make_prediction, make_version, png_bytes

pytestmark = pytest.mark.django_db(transaction=True)


def comparison_of(owner, *versions, visibility="unlisted"):
    comparison = Comparison.objects.create(owner=owner, input={"prompt": "a red fox"}, seed=42, visibility=visibility)
    for version in versions:
        make_prediction(version, owner=owner, comparison=comparison, visibility=visibility)
    return comparison


def test_a_prediction_bundle_holds_its_version_input_seed_and_hashed_pngs(client, alice, sd_version):
    prediction = make_prediction(sd_version, owner=alice, visibility="unlisted")

    response = client.get(f"/bundles/export/prediction/{prediction.id}")

    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    assert f'filename="lightbox-prediction-{prediction.id}.zip"' in response["Content-Disposition"]
    manifest, images = unzip(response.content)
    assert manifest["format"] == "lightbox-bundle/1" and manifest["kind"] == "prediction"
    assert manifest["lightbox"]["version"]
    [version] = manifest["versions"]
    assert version["id"] == sd_version.id and version["model"] == "local/tiny-sd"
    assert version["backend"] == "cog" and version["location_kind"] == "cog-server"
    assert version["schema_sha256"] == bundle_service.schema_hash(sd_version.openapi_schema)
    assert "127.0.0.1" not in response.content.decode("latin-1")  # a server's address stays here
    [entry] = manifest["predictions"]
    assert entry["input"] == prediction.input and entry["seed"] == 42
    [output] = entry["outputs"]
    data = images[output["file"]]
    assert output["sha256"] == hashlib.sha256(data).hexdigest() == prediction.outputs.get().sha256
    assert output["pixel_sha256"] == bundles.pixel_hash(data)


def test_a_private_prediction_bundle_is_only_for_its_owner(client, alice, bob, sd_version):
    prediction = make_prediction(sd_version, owner=alice, visibility="private")
    assert client.get(f"/bundles/export/prediction/{prediction.id}").status_code == 404
    client.force_login(bob)
    assert client.get(f"/bundles/export/prediction/{prediction.id}").status_code == 404
    client.force_login(alice)
    assert client.get(f"/bundles/export/prediction/{prediction.id}").status_code == 200


def test_the_comparison_page_offers_the_bundle_and_the_latest_rerun(client_alice, alice, sd_version, turbo_version):
    comparison = comparison_of(alice, sd_version, turbo_version)
    html = client_alice.get(f"/c/{comparison.id}").content.decode()
    assert f'href="/bundles/export/comparison/{comparison.id}"' in html
    assert f'action="/bundles/latest/comparison/{comparison.id}"' in html

    manifest, images = unzip(client_alice.get(f"/bundles/export/comparison/{comparison.id}").content)

    assert [c["id"] for c in manifest["comparisons"]] == [comparison.id]
    assert manifest["comparisons"][0]["seed"] == 42
    assert {p["model"] for p in manifest["predictions"]} == {"local/tiny-sd", "local/sd-turbo"}
    assert len(images) == 2


def test_the_api_serves_bundles_as_an_extension(client, alice, sd_version):
    token = ApiToken.issue(alice)[1]
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    comparison = comparison_of(alice, sd_version, visibility="private")
    prediction = comparison.predictions.get()

    assert client.get(f"/v1/predictions/{prediction.id}/bundle", **auth)["Content-Type"] == "application/zip"
    assert client.get(f"/v1/comparisons/{comparison.id}/bundle", **auth).status_code == 200
    missing = client.get("/v1/comparisons/nope/bundle", **auth)
    assert missing.status_code == 404 and missing["Content-Type"] == "application/problem+json"
    document = client.get("/v1/openapi.json").json()
    for path in ("/v1/predictions/{prediction_id}/bundle", "/v1/comparisons/{comparison_id}/bundle", "/v1/bundles"):
        [operation] = document["paths"][path].values()
        assert operation["tags"] == ["lightbox"] and operation["x-lightbox"] is True


def test_an_import_reruns_every_image_and_pairs_it_with_its_new_run(
    client_alice, alice, sd_version, turbo_version, queued
):
    comparison = comparison_of(alice, sd_version, turbo_version)
    data = client_alice.get(f"/bundles/export/comparison/{comparison.id}").content

    response = client_alice.post("/bundles/import", {"bundle": SimpleUploadedFile("b.zip", data)})

    reproduction = Reproduction.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/bundles/{reproduction.id}"
    assert [row["how"] for row in reproduction.mapping] == ["the same version, by its id"] * 2
    new = reproduction.comparison
    assert new is not None and new.id != comparison.id and new.seed == 42 and new.visibility == "private"
    runs = list(new.predictions.all())
    assert sorted(queued) == sorted(p.id for p in runs)
    assert {p.input["seed"] for p in runs} == {42}
    assert reproduction.items.count() == 2
    page = client_alice.get(f"/bundles/{reproduction.id}").content.decode()
    assert "Running…" in page and "2 running" in page
    before = client_alice.get(f"/bundles/{reproduction.id}/before/0.png")
    assert before.status_code == 200 and before["Content-Type"] == "image/png"


def test_a_version_not_here_is_mapped_by_model_name_and_said_so(client_alice, alice, sd_version, queued):
    prediction = make_prediction(sd_version, owner=alice, visibility="unlisted")
    data = client_alice.get(f"/bundles/export/prediction/{prediction.id}").content
    old_id = sd_version.id
    prediction.delete()
    sd_version.delete()
    here = make_version("local", "tiny-sd", copy.deepcopy(SCHEMA), location="http://127.0.0.1:9/elsewhere")

    reproduction = bundle_service.import_bundle(alice, data)

    [row] = reproduction.mapping
    assert row["version"] == old_id and row["picked"] == here.id
    assert "by model name" in row["how"] and "same input schema" in row["how"]
    assert Prediction.objects.get(pk=queued[0]).version_id == here.id


def test_a_bundle_naming_versions_this_site_lacks_imports_nothing(client_alice, alice, sd_version, turbo_version):
    comparison = comparison_of(alice, sd_version, turbo_version)
    data = client_alice.get(f"/bundles/export/comparison/{comparison.id}").content
    Comparison.objects.all().delete()
    Version.objects.all().delete()

    response = client_alice.post("/bundles/import", {"bundle": SimpleUploadedFile("b.zip", data)})

    assert response.status_code == 422
    html = response.content.decode()
    assert "Nothing in this bundle can run here" in html and "no version of local/tiny-sd here" in html
    assert Reproduction.objects.count() == ReproductionItem.objects.count() == Prediction.objects.count() == 0


def test_some_versions_missing_runs_the_rest_and_lists_the_others(
    client_alice, alice, sd_version, turbo_version, queued
):
    comparison = comparison_of(alice, sd_version, turbo_version)
    data = client_alice.get(f"/bundles/export/comparison/{comparison.id}").content
    comparison.delete()
    turbo_version.delete()

    reproduction = bundle_service.import_bundle(alice, data)

    assert len(queued) == 1
    [skipped] = reproduction.skipped
    assert "local/sd-turbo" in skipped["what"] and "no version of local/sd-turbo here" in skipped["why"]
    page = client_alice.get(f"/bundles/{reproduction.id}").content.decode()
    assert "Not run here (1)" in page


def test_bad_bundles_say_why_and_leave_nothing(client_alice, alice, sd_version):
    prediction = make_prediction(sd_version, owner=alice, visibility="unlisted")
    good = client_alice.get(f"/bundles/export/prediction/{prediction.id}").content
    token = ApiToken.issue(alice)[1]
    before = Prediction.objects.count()
    manifest, images = unzip(good)
    [name] = images
    future = bundles.write({**manifest, "format": "lightbox-bundle/9"}, images)
    tampered = bundles.write(manifest, {name: png_bytes(color=(0, 0, 0))})
    for data, message in [
        (good[: len(good) // 2], "not a complete zip file"),
        (future, "newer than this Lightbox reads"),
        (tampered, "the bundle was changed"),
        (b"hello", "not a complete zip file"),
    ]:
        page = client_alice.post("/bundles/import", {"bundle": SimpleUploadedFile("b.zip", data)})
        assert page.status_code == 422 and message in page.content.decode()
        api = client_alice.post(
            "/v1/bundles", {"bundle": SimpleUploadedFile("b.zip", data)}, HTTP_AUTHORIZATION=f"Bearer {token}"
        )
        assert api.status_code == 422 and api["Content-Type"] == "application/problem+json"
        assert message in api.json()["detail"]
    assert Prediction.objects.count() == before and Reproduction.objects.count() == 0


def test_the_api_imports_a_raw_zip_and_reports_verdicts(client, alice, sd_version, queued):
    token = ApiToken.issue(alice)[1]
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    prediction = make_prediction(sd_version, owner=alice, visibility="private")
    data = client.get(f"/v1/predictions/{prediction.id}/bundle", **auth).content

    created = client.post("/v1/bundles", data, content_type="application/zip", **auth)

    assert created.status_code == 201, created.content
    body = created.json()
    assert body["kind"] == "import" and body["versions"][0]["picked"] == sd_version.id
    assert [item["verdict"] for item in body["items"]] == ["pending"]
    assert client.get(f"/v1/bundles/{body['id']}", **auth).json()["id"] == body["id"]
    empty = client.post("/v1/bundles", {}, **auth)
    assert empty.status_code == 422 and empty.json()["invalid_fields"][0]["field"] == "bundle"


def grid_of(owner, *versions):
    grid = Grid.objects.create(
        owner=owner,
        title="steps by model",
        input={"prompt": "a red fox"},
        seed=42,
        axes=[
            {"kind": "version", "values": [v.id for v in versions]},
            {"kind": "field", "field": "num_inference_steps", "values": [4, 8]},
        ],
        visibility="unlisted",
    )
    for y in range(2):
        cell = Comparison.objects.create(owner=owner, input={"prompt": "a red fox"}, seed=42, grid=grid, grid_y=y)
        for version in versions:
            make_prediction(version, owner=owner, comparison=cell, visibility="unlisted")
    return grid


def test_a_grid_goes_out_with_its_axes_and_comes_back_as_a_grid(client_alice, alice, sd_version, turbo_version, queued):
    grid = grid_of(alice, sd_version, turbo_version)
    html = render_to_string("partials/bundle_actions.html", {"item": grid, "kind": "grid", "user": alice})
    assert f'href="/bundles/export/grid/{grid.id}"' in html and f'action="/bundles/latest/grid/{grid.id}"' in html

    manifest, images = unzip(client_alice.get(f"/bundles/export/grid/{grid.id}").content)

    assert manifest["kind"] == "grid" and manifest["run"]["axes"] == grid.axes and manifest["run"]["seed"] == 42
    assert sorted(c["grid"] for c in manifest["comparisons"]) == [[0, 0, 0], [0, 1, 0]]
    assert len(manifest["predictions"]) == len(images) == 4

    reproduction = bundle_service.import_bundle(alice, bundles.write(manifest, images))

    new = Grid.objects.get(pk=reproduction.grid_id)
    assert new.owner == alice and new.axes == grid.axes and new.title == "steps by model"
    assert sorted(new.comparisons.values_list("grid_y", flat=True)) == [0, 1]
    # A grid's predictions wait, held, for the fair scheduler (app.services.scheduling).
    assert Prediction.objects.filter(comparison__grid=new).count() == 4 and reproduction.items.count() == 4


def test_a_benchmark_run_comes_back_with_its_prompts(client_alice, alice, sd_version, queued):
    prompt_set = PromptSet.objects.create(slug="mine", name="Mine", owner=alice)
    prompt = Prompt.objects.create(prompt_set=prompt_set, position=1, text="a red fox", category="animals")
    run = BenchmarkRun.objects.create(owner=alice, prompt_set=prompt_set, seeds=[42], visibility="unlisted")
    run.versions.set([sd_version])
    cell = Comparison.objects.create(
        owner=alice, input={"prompt": "a red fox"}, seed=42, benchmark=run, benchmark_prompt=prompt
    )
    make_prediction(sd_version, owner=alice, comparison=cell, visibility="unlisted")
    data = client_alice.get(f"/bundles/export/benchmark/{run.id}").content
    manifest, _ = unzip(data)
    assert manifest["run"]["prompt_set"] == {"slug": "mine", "name": "Mine"}
    assert manifest["comparisons"][0]["benchmark_prompt"]["text"] == "a red fox"
    run.delete()
    prompt_set.delete()  # another Lightbox, without the set: the importer gets a copy

    reproduction = bundle_service.import_bundle(alice, data)

    new = BenchmarkRun.objects.get(pk=reproduction.benchmark_id)
    assert new.prompt_set.owner == alice and new.prompt_set.slug.startswith("mine-")
    assert list(new.comparisons.values_list("benchmark_prompt__text", flat=True)) == ["a red fox"]
    assert list(new.versions.all()) == [sd_version]


def test_a_grid_reruns_on_the_latest_versions_as_a_new_grid(client_alice, alice, sd_version, queued):
    grid = grid_of(alice, sd_version)
    newer = make_version("local", "tiny-sd", copy.deepcopy(SCHEMA), location="http://127.0.0.1:9/newer")

    response = client_alice.post(f"/bundles/latest/grid/{grid.id}")

    reproduction = Reproduction.objects.get(kind="latest")
    assert response["Location"] == f"/bundles/{reproduction.id}"
    new = Grid.objects.get(pk=reproduction.grid_id)
    assert new.axes[0]["values"] == [newer.id] and new.title == "steps by model (latest versions)"
    assert {p.version_id for p in Prediction.objects.filter(pk__in=queued)} == {newer.id}
    assert sorted(new.comparisons.values_list("grid_y", flat=True)) == [0, 1]
    assert reproduction.items.count() == 2
    assert Comparison.objects.standalone().filter(owner=alice).count() == 0


def hostile(manifest, images):
    """Manifests a hand-made bundle could carry, each with the image intact."""
    entry = manifest["predictions"][0]
    yield {**manifest, "versions": [{"id": ["x"], "model": "local/tiny-sd"}]}, "needs an 'id' and a 'model'"
    yield {**manifest, "predictions": [{**entry, "version": ["x"]}]}, "names a version the manifest does not list"
    yield (
        {**manifest, "predictions": [{**entry, "comparison": {"a": 1}}]},
        "names a comparison the manifest does not list",
    )
    yield {**manifest, "predictions": [{**entry, "input": "rm -rf /"}]}, "needs an 'id' and an 'input' object"
    bad_index = [{**entry["outputs"][0], "index": "0; DROP TABLE"}]
    yield {**manifest, "predictions": [{**entry, "outputs": bad_index}]}, "an 'index' from 0 to 999"
    yield {**manifest, "predictions": [{**entry, "input": {"prompt": "a\u0000b"}}]}, "cannot be stored"
    yield {**manifest, "comparisons": "all of them"}, "has no 'comparisons' list"
    deep = {"prompt": "x"}
    for _ in range(40):
        deep = {"nested": deep}
    yield {**manifest, "predictions": [{**entry, "input": deep}]}, "not JSON Lightbox can read"


def test_hostile_manifests_are_refused_with_a_reason_never_a_500(client, alice, sd_version):
    token = ApiToken.issue(alice)[1]
    prediction = make_prediction(sd_version, owner=alice, visibility="private")
    manifest, images = unzip(bundle_service.export(prediction, alice)[1])
    for changed, message in hostile(manifest, images):
        response = client.post(
            "/v1/bundles",
            bundles.write(changed, images),
            content_type="application/zip",
            HTTP_AUTHORIZATION=f"Bearer {token}",
        )
        assert response.status_code == 422, (message, response.content)
        assert message in response.json()["detail"]
    assert Reproduction.objects.count() == 0 and Prediction.objects.count() == 1
