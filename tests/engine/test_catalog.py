"""The catalog: versions read from their backends, availability, commands."""

import io

import httpx
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from app.core.schema import InputError
from app.models import ApiToken, Model, Prediction, Version
from app.services import catalog, predictions
from tasks.predictions import refresh_versions

pytestmark = pytest.mark.django_db(transaction=True)


def test_import_version_reads_the_schema_from_a_cog_server(cog_server):
    out = io.StringIO()
    call_command("import_version", cog_server.url, "--model", "acme/painter", stdout=out)

    version = Version.objects.get()
    assert out.getvalue().strip() == f"acme/painter:{version.id}"
    assert version.backend == "cog" and version.location == cog_server.url
    assert version.available
    assert "prompt" in version.input_schema["properties"]
    assert version.cog_version == "0.23.1"


def test_import_version_from_replicate(replicate_settings):
    call_command("import_version", "stability-ai/sdxl:7762fd07cf82c948538e41f63f77d685e02b063e37e496e96eefd46c929f9bdc")

    version = Version.objects.get()
    assert str(version.model) == "stability-ai/sdxl" and version.backend == "replicate"
    assert version.input_schema["properties"]["prompt"]["type"] == "string"


def test_import_version_of_a_server_that_is_down_says_so():
    with pytest.raises(CommandError, match="could not connect"):
        call_command("import_version", "http://127.0.0.1:9", "--model", "acme/gone")
    assert not Model.objects.exists()


def test_the_default_catalog_lists_the_guides_models_with_unavailable_ones_explained(settings):
    settings.REPLICATE_API_TOKEN = ""
    out = io.StringIO()

    call_command("load_catalog", stdout=out)
    call_command("load_catalog", stdout=io.StringIO())  # idempotent

    names = {str(m) for m in Model.objects.all()}
    assert {"stability-ai/sdxl", "stability-ai/stable-diffusion", "fofr/sdxl-turbo"} <= names
    assert {
        "local/tiny-sd",
        "local/tiny-sdxl",
        "local/sd-turbo",
        "local/sdxl-turbo",
        "local/sd-1.5",
        "local/sd-2.1",
        "local/sdxl",
    } <= names
    assert Version.objects.filter(model__owner="stability-ai", model__name="stable-diffusion").count() == 2
    sdxl = Version.objects.get(model__name="sdxl", model__owner="stability-ai")
    assert not sdxl.available and "REPLICATE_API_TOKEN" in sdxl.unavailable_reason
    assert "stability-ai/sdxl (replicate) unavailable: Set REPLICATE_API_TOKEN" in out.getvalue()


def test_an_unavailable_version_refuses_runs_with_the_reason(alice):
    version = catalog.add_version(
        "local",
        "down",
        "cog",
        "http://127.0.0.1:9",
        {"components": {"schemas": {"Input": {"type": "object", "properties": {"prompt": {"type": "string"}}}}}},
    )

    with pytest.raises(InputError) as caught:
        predictions.start(version, {"prompt": "x"}, owner=alice)

    assert "could not connect" in caught.value.errors["version"][0]
    assert not Prediction.objects.exists()


def test_create_token_prints_a_token_that_works(site, alice, cog_version):
    out = io.StringIO()
    call_command("create_token", "alice", stdout=out)
    token = out.getvalue().strip()

    response = httpx.get(f"{site.url}/v1/models/local/test-model", headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 200
    assert ApiToken.objects.get().key_hash != token  # only the hash is stored


def test_create_token_for_an_unknown_user_fails():
    with pytest.raises(CommandError, match="No user named 'nobody'"):
        call_command("create_token", "nobody")


def test_healthz_reports_database_broker_and_each_backend(site, cog_version, settings):
    settings.HEALTH_TOKEN = "monitor-token"
    down = catalog.add_version("local", "down", "cog", "http://127.0.0.1:9")
    refresh_versions()  # the beat's job: /healthz reads what it stored

    body = httpx.get(f"{site.url}/healthz", headers={"Authorization": "Bearer monitor-token"}).json()

    assert body["database"] == "ok" and body["broker"] == "ok"
    assert body["versions"][str(cog_version)] == {"available": True}
    assert body["versions"][str(down)]["available"] is False
    assert "could not connect" in body["versions"][str(down)]["reason"]
