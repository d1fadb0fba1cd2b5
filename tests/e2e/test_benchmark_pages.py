"""The benchmark pages in a real browser against the worker and two Cog
servers: a run started from the form, its page at desktop and phone widths
(light and dark) filling in, stopped and resumed with the buttons, the prompt
sets' page and the side-by-side of a watched model; axe-clean, screenshots
into artifacts/screenshots/ (and /tmp/shots-bench when it exists)."""

import copy
import json
import shutil
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from app.models import BenchmarkRun
from app.services import benchmarks, catalog, prompt_sets
from tests.conftest import COG_PREDICTOR_DIR, wait_until
from tests.e2e.conftest import DESKTOP, PASSWORD, PHONE, SCREENSHOTS, axe_violations, log_in, screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SCHEMA = json.loads((COG_PREDICTOR_DIR / ".cog" / "openapi_schema.json").read_text())
LAYOUTS = [("desktop", DESKTOP, "light"), ("phone", PHONE, "dark"), ("desktop-dark", DESKTOP, "dark")]
SHOTS = Path("/tmp/shots-bench")


def finished(run):
    return benchmarks.summary(BenchmarkRun.objects.get(pk=run.pk))["state"] == "finished"


def test_a_run_from_the_form_to_its_page_at_every_width(site, worker, two_versions, new_page):
    base = site.url
    owner = get_user_model().objects.create_user("bea", "bea@example.com", PASSWORD)
    page = new_page()
    log_in(page, base, "bea")
    page.get_by_role("link", name="Benchmarks").first.click()
    expect(page.get_by_role("heading", name="PartiPrompts")).to_be_visible()
    expect(page.locator("main")).to_contain_text("Apache-2.0")
    page.get_by_label("Name of the set").fill("Animals at dusk")
    page.get_by_label("Prompts, one a line").fill("a red fox at dusk\na snowy owl on a fence\na cat asleep in the sun")
    page.get_by_role("button", name="Add the set").click()
    expect(page.locator(".messages")).to_contain_text("3 prompts saved")

    page.goto(base + "/b/new")
    page.get_by_label("Prompt set").select_option(label="Animals at dusk")
    for version in two_versions:
        page.get_by_role("checkbox", name=str(version.model), exact=True).check()
    page.get_by_label("Seeds per prompt").fill("2")
    page.get_by_label("Steps").fill("2")
    page.get_by_role("button", name="Estimate").click()
    expect(page.locator("#estimate-title")).to_be_visible()
    expect(page.locator(".facts").first).to_contain_text("12")
    screenshot(page, "benchmark-new-desktop")
    problems = {"benchmark-new": axe_violations(page)}
    page.get_by_role("button", name="Start the run").click()
    page.wait_for_url(base + "/b/*")
    run = BenchmarkRun.objects.get(owner=owner)
    expect(page.locator("#progress")).to_contain_text("/ 12")

    wait_until(lambda: finished(run), timeout=120, interval=0.5, message="the run to finish")
    # The progress region polls itself (htmx) until the run ends.
    expect(page.locator("#progress .status")).to_have_text("Finished", timeout=15_000)
    page.reload()
    expect(page.locator(".bench-strip img")).to_have_count(12)

    for layout, viewport, scheme in LAYOUTS:
        view = new_page(viewport=viewport, color_scheme=scheme)
        log_in(view, base, "bea")
        view.goto(base + f"/b/{run.pk}")
        view.wait_for_load_state("networkidle")
        expect(view.locator(".bench-strip")).to_have_count(6)
        screenshot(view, f"benchmark-{layout}")
        problems[f"benchmark-{layout}"] = axe_violations(view)
    view.goto(base + "/prompt-sets")
    screenshot(view, "prompt-sets-desktop-dark")
    problems["prompt-sets"] = axe_violations(view)
    assert not any(problems.values()), problems

    page.get_by_role("button", name="Watch local/tiny-sd with this run").click()
    expect(page.locator(".messages")).to_contain_text("Watching local/tiny-sd")
    changed = copy.deepcopy(SCHEMA)
    changed["info"]["description"] = "fine-tuned"
    new = catalog.add_version("local", "tiny-sd", "cog", two_versions[0].location, changed)
    catalog.refresh_availability(new, max_age=0)
    followup = wait_until(lambda: BenchmarkRun.objects.filter(baseline=run).first(), timeout=30, message="the followup")
    wait_until(lambda: finished(followup), timeout=120, interval=0.5, message="the followup to finish")
    page.goto(base + "/")
    page.get_by_role("link", name="Open it").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("the new version against the reference")
    expect(page.locator(".bench-versus img")).to_have_count(12)
    screenshot(page, "benchmark-versus-desktop")
    assert not axe_violations(page)
    phone = new_page(viewport=PHONE, color_scheme="light")
    log_in(phone, base, "bea")
    phone.goto(base + f"/b/{followup.pk}/versus")
    screenshot(phone, "benchmark-versus-phone")
    assert not axe_violations(phone)
    if SHOTS.exists():
        for shot in SCREENSHOTS.glob("benchmark*.png"):
            shutil.copy(shot, SHOTS / shot.name)
        shutil.copy(SCREENSHOTS / "prompt-sets-desktop-dark.png", SHOTS)


def test_stop_and_go_on_from_the_page(site, worker, cog_version, new_page):
    base = site.url
    owner = get_user_model().objects.create_user("cai", "cai@example.com", PASSWORD)
    rows = [(f"a lighthouse, study {i}", "") for i in range(15)]
    run = benchmarks.create(
        owner,
        prompt_sets.create(owner, "Lighthouses", rows),
        [cog_version],
        seeds=[4],
        input={"num_inference_steps": 8},
    )
    page = new_page(viewport=PHONE)
    log_in(page, base, "cai")
    page.goto(base + f"/b/{run.pk}")
    page.get_by_role("button", name="Stop").click()
    expect(page.locator(".messages")).to_contain_text("Stopped;")
    expect(page.locator("#progress .status")).to_have_text("Stopped")
    assert BenchmarkRun.objects.get(pk=run.pk).status == "stopped"
    screenshot(page, "benchmark-stopped-phone")
    assert not axe_violations(page)

    page.get_by_role("button", name="Go on").click()
    expect(page.locator(".messages")).to_contain_text("Going on")

    # Going on re-queues what stopping left; the run ends with every prompt
    # done (its materialising task may still be starting the last ones when
    # the first have ended).
    def all_done():
        summary = benchmarks.summary(BenchmarkRun.objects.get(pk=run.pk))
        return summary["succeeded"] == 15 and summary["active"] == 0

    wait_until(all_done, timeout=150, interval=0.5, message="the resumed run to finish all 15")
    if SHOTS.exists():
        shutil.copy(SCREENSHOTS / "benchmark-stopped-phone.png", SHOTS)
