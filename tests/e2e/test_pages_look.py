"""Every main page at desktop and phone widths, each in light and dark: a
screenshot for people to look at (artifacts/screenshots/, kept by CI) and
axe-core's accessibility check."""

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from app.services import comparisons
from tests.conftest import wait_for_status
from tests.e2e.conftest import LAYOUTS, PASSWORD, PHONE, axe_violations, log_in, screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def finished_comparison(worker, two_versions):
    owner = get_user_model().objects.create_user("frida", "frida@example.com", PASSWORD)
    comparison = comparisons.start(
        two_versions,
        {"prompt": "a red fox in fresh snow, golden hour", "num_inference_steps": 8, "num_outputs": 2},
        owner=owner,
    )
    for prediction in comparison.predictions.all():
        assert wait_for_status(prediction.id).status == "succeeded"
    comparison.set_visibility("public")
    return comparison


def test_every_main_page_at_desktop_and_phone_widths(site, finished_comparison, new_page):
    base = site.url
    prediction = finished_comparison.predictions.order_by("created_at").first()
    signed_in = {
        "playground": "/",
        "comparison": f"/c/{finished_comparison.id}",
        "comparison-running": None,  # a new one for each layout, caught while it runs
        "prediction": f"/p/{prediction.id}",
        "gallery": "/gallery",
        "models": "/models",
        "model": f"/models/{prediction.version.model.owner}/{prediction.version.model.name}",
        "profile": "/account/",
    }
    anonymous = {
        "login": "/account/login/",
        "signup": "/account/signup",
        "password-reset": "/account/password_reset/",
        "not-found": "/p/nothing-here",
    }
    problems = {}
    for layout, viewport, scheme in LAYOUTS:
        page = new_page(viewport=viewport, color_scheme=scheme)
        for name, path in anonymous.items():
            page.goto(base + path)
            screenshot(page, f"{name}-{layout}")
            problems[f"{name}-{layout}"] = axe_violations(page)
        log_in(page, base, "frida")
        for name, path in signed_in.items():
            if name == "comparison-running":
                running = comparisons.start(
                    [prediction.version],
                    {"prompt": "a slow watercolour of a harbour", "num_inference_steps": 30},
                    owner=finished_comparison.owner,
                    extra_input={prediction.version_id: {"step_delay": 0.3}},
                )
                path = f"/c/{running.id}"
            page.goto(base + path)
            if name == "comparison-running":
                expect(page.locator(".card .logs")).to_contain_text("step 2/30", timeout=15_000)
            else:
                page.wait_for_load_state("networkidle")
            screenshot(page, f"{name}-{layout}")
            problems[f"{name}-{layout}"] = axe_violations(page)
            if name == "comparison-running":
                comparisons.cancel(running)
            # No horizontal scrolling of the page itself on a phone.
            if viewport == PHONE:
                width = page.evaluate("document.documentElement.scrollWidth")
                assert width <= viewport["width"], f"{name} is {width}px wide on a phone"
        assert page.csp_violations == []
    assert {page: found for page, found in problems.items() if found} == {}
