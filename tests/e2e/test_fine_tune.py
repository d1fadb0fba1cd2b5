"""The Fine-tune page in a real browser: pick the base, drop images, start; the
training page follows the steps and the loss live, and links the comparison
of base and fine-tune it starts on success. Desktop and phone, axe clean."""

from pathlib import Path

import pytest

from tests.e2e.conftest import DESKTOP, PHONE, axe_violations, screenshot, sign_up
from tests.trainings.conftest import base_server, base_version, png, trainer  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SHOTS = Path("/tmp/shots-trainapi")


def _shot(page, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    screenshot(page, name)


def test_fine_tune_page_to_the_automatic_comparison(new_page, site, worker, base_version, tmp_path):  # noqa: F811
    from app.models import Training

    photos = []
    for index in range(4):
        path = tmp_path / f"me-{index}.png"
        path.write_bytes(png((60 * index, 120, 90)))
        photos.append(str(path))
    page = new_page(DESKTOP)
    sign_up(page, site.url, "carol")
    page.get_by_role("link", name="Fine-tune").click()
    assert page.get_by_role("heading", name="Fine-tune a model").is_visible()
    assert "4 steps" in page.locator("#estimate").inner_text()  # the tiny family's default
    assert axe_violations(page) == []
    _shot(page, "fine-tune-desktop")

    # Nothing given: field errors in the page, nothing saved.
    page.get_by_label("New model name").fill("carol-face")
    page.get_by_role("button", name="Start training").click()
    assert "Drop at least one image" in page.locator(".field-invalid").first.inner_text()
    assert not Training.objects.exists()

    page.get_by_label("Training images").set_input_files(photos)
    page.get_by_label("Trigger word").fill("crl")
    page.get_by_label("Training steps").fill("3")
    page.get_by_label("New model name").fill("carol-face")
    page.get_by_role("button", name="Start training").click()
    page.wait_for_url(f"{site.url}/t/*")
    page.locator("[data-comparison]").first.wait_for(timeout=60_000)
    assert page.locator("[data-status]").inner_text() == "Succeeded"
    assert "step 3/3" in page.locator("#progress").inner_text()
    assert page.locator("[data-loss]").is_visible()
    assert page.locator("[data-comparison]").count() == 3
    assert "crl" in page.locator("[data-comparison]").first.inner_text()
    assert axe_violations(page) == []
    _shot(page, "training-desktop")
    training = Training.objects.get()
    assert training.image_count == 4 and training.new_version.trigger_word == "crl"

    phone = new_page(PHONE, color_scheme="dark")
    phone.context.add_cookies(page.context.cookies())
    phone.goto(page.url)
    assert axe_violations(phone) == []
    _shot(phone, "training-phone-dark")
    phone.goto(site.url + "/fine-tune")
    assert axe_violations(phone) == []
    _shot(phone, "fine-tune-phone-dark")

    page.locator("[data-comparison]").first.click()
    page.wait_for_url(f"{site.url}/c/*")
    assert page.get_by_role("heading", name="carol/carol-face").first.is_visible()
    # The model page lists the fine-tune with its base.
    page.goto(site.url + "/models/carol/carol-face")
    assert page.get_by_role("heading", name="Fine-tunes").is_visible()
    assert "local/tiny-base" in page.locator("section", has=page.get_by_role("heading", name="Fine-tunes")).inner_text()
    _shot(page, "model-fine-tunes-desktop")
