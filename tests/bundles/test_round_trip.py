"""Bundles, re-runs and checks through a real worker and a real Cog server
(tests/cog_predictor draws each image from its prompt and seed, as a tiny
model would, deterministically)."""

import re
import shutil
from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.utils import timezone

from app.core import bundles
from app.models import Comparison, Prediction, ReproCheck, Reproduction, Verdict
from app.services import bundles as bundle_service
from app.services import catalog, comparisons, reproductions
from tests.bundles.conftest import unzip
from tests.conftest import wait_for_status, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def run_comparison(version, owner, **given):
    comparison = comparisons.start([version], {"prompt": "a red fox", **given}, owner=owner)
    for prediction in comparison.predictions.all():
        assert wait_for_status(prediction.id).status == "succeeded"
    return comparison


def settled(reproduction):
    def done():
        items = reproductions.settle(reproduction)
        return items if all(item.verdict != Verdict.PENDING for item in items) else None

    return wait_until(done, timeout=60, message="every image's verdict")


def test_a_comparison_reimported_into_a_fresh_instance_reproduces_every_image(
    worker, cog_server, second_cog_server, two_versions, alice
):
    # Three images each: coglet lists them as their uploads finish, and they
    # still pair up by index (backends.cog puts them back in order).
    comparison = comparisons.start(two_versions, {"prompt": "a red fox", "width": 80, "num_outputs": 3}, owner=alice)
    for prediction in comparison.predictions.all():
        assert wait_for_status(prediction.id).status == "succeeded"
    _, data = bundle_service.export(comparison, alice)
    manifest, images = unzip(data)
    assert len(images) == 6 and manifest["versions"][0]["server"]  # what the Cog server reports (coglet)

    # A fresh instance: empty database, empty storage; the same model servers in its catalog.
    call_command("flush", interactive=False, verbosity=0)
    shutil.rmtree(settings.MEDIA_ROOT / "outputs", ignore_errors=True)
    carol = get_user_model().objects.create_user("carol", "carol@example.com", "correct horse battery")
    for server, name in ((cog_server, "local/tiny-sd"), (second_cog_server, "local/tiny-sdxl")):
        catalog.refresh_availability(catalog.import_version(server.url, name), max_age=0)

    reproduction = bundle_service.import_bundle(carol, data)
    items = settled(reproduction)

    assert [item.verdict for item in items] == [Verdict.IDENTICAL] * 6
    expected = {
        (p["id"], index): output["pixel_sha256"]
        for p in manifest["predictions"]
        for index, output in enumerate(p["outputs"])
    }
    for item in items:
        with item.new_output.file.open("rb") as handle:
            # Bit for bit, pixel by pixel (the PNG's own bytes carry the new prediction's id).
            assert bundles.pixel_hash(handle.read()) == expected[(item.source_prediction, item.index)]
    new = Comparison.objects.get(pk=reproduction.comparison_id)
    assert new.owner == carol and new.seed == manifest["comparisons"][0]["seed"]


def test_a_rerun_on_the_latest_version_opens_a_diff_of_old_and_new(worker, cog_server, cog_version, alice, client):
    comparison = run_comparison(cog_version, alice)
    newer = catalog.add_version(
        "local",
        "test-model",
        "cog",
        cog_server.url,
        cog_version.openapi_schema,
        version_id="f" * 64,
        created_at=timezone.now() + timedelta(seconds=1),
    )
    catalog.refresh_availability(newer, max_age=0)
    client.force_login(alice)

    response = client.post(f"/bundles/latest/comparison/{comparison.id}")

    reproduction = Reproduction.objects.get(kind="latest")
    assert response["Location"] == f"/bundles/{reproduction.id}"
    assert reproduction.comparison.predictions.get().version_id == newer.id
    assert (
        reproduction.mapping[0]["picked"] == newer.id
        and "latest version ffffffffffff" in reproduction.mapping[0]["how"]
    )
    [item] = settled(reproduction)
    assert item.verdict == Verdict.IDENTICAL
    page = client.get(f"/bundles/{reproduction.id}").content.decode()
    assert "1 identical" in page and "Before" in page and "After" in page


def test_the_reproducibility_check_runs_it_again_and_the_page_says_how_it_went(worker, cog_version, alice, client):
    comparison = run_comparison(cog_version, alice)
    prediction = comparison.predictions.get()
    client.force_login(alice)
    assert "Not checked yet" in client.get(f"/p/{prediction.id}").content.decode()

    client.post(f"/p/{prediction.id}/repro")

    check = ReproCheck.objects.get(prediction=prediction)
    assert check.rerun.input == prediction.input and check.rerun.owner == alice
    wait_for_status(check.rerun_id)
    page = client.get(f"/p/{prediction.id}").content.decode()
    check.refresh_from_db()
    assert check.verdict == Verdict.IDENTICAL and check.distance == 0.0 and check.checked_at
    assert f"Re-ran identical on {check.checked_at:%Y-%m-%d}" in re.sub(r"<[^>]+>", "", page)


def test_the_beat_checks_a_sample_of_published_predictions(worker, cog_version, alice, settings):
    comparison = run_comparison(cog_version, alice)
    comparison.set_visibility("public")
    private = run_comparison(cog_version, alice, prompt="not shared")
    private.set_visibility("private")

    assert reproductions.check_sample(0) == 0  # the default: off
    assert reproductions.check_sample(5) == 1  # only the published one

    check = ReproCheck.objects.get()
    assert check.prediction.visibility == "public"
    wait_for_status(check.rerun_id)
    reproductions.check_sample(0)  # settles what ended
    check.refresh_from_db()
    assert check.verdict == Verdict.IDENTICAL
    assert reproductions.check_sample(5) == 0  # checked this week already
    assert Prediction.objects.get(pk=check.rerun_id).visibility == "private"
