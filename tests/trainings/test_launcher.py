"""How a local base version knows its trainer: LIGHTBOX_LOCAL_TRAINERS names
the local models whose trainer `make run` starts, and the catalog records it."""

import io

import pytest
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def test_the_catalog_records_the_trainers_of_local_models(settings):
    from app.models import Version
    from app.services import catalog

    settings.LOCAL_TRAINERS = ["tiny-sd"]
    catalog.load_default()
    tiny_sd = Version.objects.get(model__owner="local", model__name="tiny-sd")
    tiny_sdxl = Version.objects.get(model__owner="local", model__name="tiny-sdxl")
    assert tiny_sd.trainer_location == catalog.local_trainer_url("tiny-sd")
    assert tiny_sd.trainer_location.endswith(str(catalog.local_trainer_port("tiny-sd")))
    assert tiny_sdxl.trainer_location == "" and not tiny_sdxl.trainable

    settings.LOCAL_TRAINERS = []
    catalog.load_default()
    assert Version.objects.get(pk=tiny_sd.pk).trainer_location == ""


def test_make_run_starts_the_trainers(settings):
    settings.LOCAL_TRAINERS = ["tiny-sd", "sd-1.5"]
    out = io.StringIO()
    call_command("local_procfile", stdout=out)
    # tiny-sd's trainer is in the Procfile itself; the others are added.
    assert "sd-1.5-trainer: python manage.py serve_trainer sd-1.5" in out.getvalue()
