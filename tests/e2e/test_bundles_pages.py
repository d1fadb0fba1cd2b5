"""The reproducibility pages in a real browser: a bundle downloaded from a
comparison and imported again (its results page judging each image), and the
prediction page's reproducibility check, at desktop and phone widths, light
and dark, with axe-core's check and screenshots."""

import shutil
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from app.services import comparisons
from tests.conftest import wait_for_status
from tests.e2e.conftest import DESKTOP, PASSWORD, PHONE, SCREENSHOTS, axe_violations, log_in, screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

LAYOUTS = [("desktop", DESKTOP, "light"), ("phone", PHONE, "dark")]
LOOKED_AT = Path("/tmp/shots-bundles")


def shoot(page, name):
    screenshot(page, name)
    LOOKED_AT.mkdir(parents=True, exist_ok=True)
    shutil.copy(SCREENSHOTS / f"{name}.png", LOOKED_AT / f"{name}.png")


@pytest.fixture
def finished(worker, two_versions):
    owner = get_user_model().objects.create_user("frida", "frida@example.com", PASSWORD)
    comparison = comparisons.start(two_versions, {"prompt": "a red fox in fresh snow"}, owner=owner)
    for prediction in comparison.predictions.all():
        assert wait_for_status(prediction.id).status == "succeeded"
    return comparison


def test_a_downloaded_bundle_imports_and_every_image_is_judged(site, finished, new_page, tmp_path):
    problems = {}
    for layout, viewport, scheme in LAYOUTS:
        page = new_page(viewport=viewport, color_scheme=scheme)
        log_in(page, site.url, "frida")
        page.goto(f"{site.url}/c/{finished.id}")
        shoot(page, f"comparison-with-bundle-actions-{layout}")
        with page.expect_download() as download:
            page.get_by_role("link", name="Download bundle").click()
        bundle = tmp_path / f"{layout}.zip"
        download.value.save_as(bundle)

        page.goto(f"{site.url}/bundles/import")
        shoot(page, f"bundle-import-{layout}")
        problems[f"import-{layout}"] = axe_violations(page)
        page.get_by_role("button", name="Import and run").click()
        expect(page.locator(".field .error")).to_contain_text("This field is required")
        page.get_by_label("Bundle (.zip)").set_input_files(str(bundle))
        page.get_by_role("button", name="Import and run").click()

        page.wait_for_url(f"{site.url}/bundles/*")
        expect(page.get_by_role("status").filter(has_text="identical")).to_contain_text("2 identical", timeout=30_000)
        expect(page.locator(".mapping-list")).to_contain_text("the same version, by its id")
        shoot(page, f"reproduction-{layout}")
        problems[f"reproduction-{layout}"] = axe_violations(page)
        if viewport == PHONE:
            assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]

        # A damaged bundle: a message at the field, nothing imported.
        page.goto(f"{site.url}/bundles/import")
        (tmp_path / "broken.zip").write_bytes(bundle.read_bytes()[:300])
        page.get_by_label("Bundle (.zip)").set_input_files(str(tmp_path / "broken.zip"))
        page.get_by_role("button", name="Import and run").click()
        expect(page.locator(".field .error")).to_contain_text("not a complete zip file")
        shoot(page, f"bundle-import-error-{layout}")
        problems[f"import-error-{layout}"] = axe_violations(page)
        assert page.csp_violations == []
    assert {name: found for name, found in problems.items() if found} == {}


def test_the_reproducibility_check_button_shows_the_verdict(site, finished, new_page):
    prediction = finished.predictions.order_by("created_at").first()
    problems = {}
    for layout, viewport, scheme in LAYOUTS:
        page = new_page(viewport=viewport, color_scheme=scheme)
        log_in(page, site.url, "frida")
        page.goto(f"{site.url}/p/{prediction.id}")
        expect(page.locator("#repro-check")).to_contain_text("Not checked yet" if layout == "desktop" else "Re-ran")
        page.get_by_role("button", name="Check it reproduces").click()
        expect(page.locator("#repro-check")).to_contain_text("Re-ran identical on", timeout=30_000)
        page.locator("#repro-title").scroll_into_view_if_needed()
        shoot(page, f"repro-check-{layout}")
        problems[layout] = axe_violations(page)
        assert page.csp_violations == []
    assert {name: found for name, found in problems.items() if found} == {}
