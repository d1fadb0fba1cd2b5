"""The round trip on a real diffusion model: our inference server (inference/)
running the tiny random-weight SD pipeline (inference/tiny.py) behind the real
worker. An exported comparison re-imported into a fresh instance (flushed
database, empty storage) reproduces every image pixel for pixel."""

import shutil

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command

from app.core import bundles
from app.models import Verdict
from app.services import bundles as bundle_service
from app.services import catalog, comparisons, reproductions
from tests.bundles.conftest import unzip
from tests.conftest import wait_for_status, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_tiny_sd_comparison_reimported_into_a_fresh_instance_is_identical(worker, tiny_sd, alice):
    version = catalog.import_version(tiny_sd.url, "local/tiny-sd")
    catalog.refresh_availability(version, max_age=0)
    given = {"prompt": "a red fox in fresh snow", "width": 64, "height": 64, "num_inference_steps": 2}
    comparison = comparisons.start([version], given, owner=alice)
    [prediction] = comparison.predictions.all()
    assert wait_for_status(prediction.id, timeout=120).status == "succeeded"
    _, data = bundle_service.export(comparison, alice)
    manifest, _ = unzip(data)
    assert manifest["versions"][0]["server"]  # coglet's version, as its health check says
    assert manifest["predictions"][0]["runtime"].startswith("torch ")  # torch, diffusers, device: from its logs

    call_command("flush", interactive=False, verbosity=0)
    shutil.rmtree(settings.MEDIA_ROOT / "outputs", ignore_errors=True)
    carol = get_user_model().objects.create_user("carol", "carol@example.com", "correct horse battery")
    catalog.refresh_availability(catalog.import_version(tiny_sd.url, "local/tiny-sd"), max_age=0)

    reproduction = bundle_service.import_bundle(carol, data)

    def judged():
        items = reproductions.settle(reproduction)
        return items if all(item.verdict != Verdict.PENDING for item in items) else None

    [item] = wait_until(judged, timeout=120, message="the verdict")
    assert item.verdict == Verdict.IDENTICAL
    with item.new_output.file.open("rb") as handle:
        assert bundles.pixel_hash(handle.read()) == manifest["predictions"][0]["outputs"][0]["pixel_sha256"]
