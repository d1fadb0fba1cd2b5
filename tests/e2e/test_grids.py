"""Grids in the browser (issue 14): made from the playground, watched as they
fill in through the one poll, explored (swap, hide, size), on desktop and
phone, light and dark, axe clean."""

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from app.models import Grid
from tests.e2e.conftest import DESKTOP, PHONE, axe_violations, screenshot, sign_up

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SHOTS = Path("/tmp/shots-grid")


def shot(page, name):
    screenshot(page, name)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_make_a_grid_watch_it_fill_in_and_explore_it(site, worker, two_versions, new_page):
    base = site.url
    page = new_page(viewport=DESKTOP)
    sign_up(page, base, "gina")
    page.get_by_role("checkbox", name=re.compile(r"^local\/tiny-sdxl ")).uncheck()
    page.get_by_role("checkbox", name=re.compile(r"^local\/tiny-sd ")).check()
    page.get_by_label("Prompt", exact=True).fill("a red fox in the snow")
    page.get_by_text("Make a grid").click()
    page.get_by_label("X axis", exact=True).select_option("field:num_inference_steps")
    page.get_by_label("X axis values").fill("1-3")
    page.get_by_label("Y axis", exact=True).select_option("prompt")
    page.get_by_label("Y axis values").fill("fox|owl")

    # The count, estimate and limits come before anything starts (htmx).
    page.get_by_role("button", name="Count the cells").click()
    expect(page.locator("#grid-preview")).to_contain_text("6 cells")
    expect(page.locator("#grid-preview")).to_contain_text("Ready to start")
    # A bad value is said next to its axis, in the preview.
    page.get_by_label("X axis values").fill("1-300")
    page.get_by_role("button", name="Count the cells").click()
    expect(page.locator("#grid-preview")).to_contain_text("above its maximum 100")
    page.get_by_label("X axis values").fill("1-3")
    shot(page, "grid-playground-desktop")

    page.get_by_role("button", name="Start the grid").click()
    page.wait_for_url(re.compile(r"/g/[a-z0-9]+$"))
    grid = Grid.objects.get()
    # The cells fill in live: one poll for the whole grid.
    polls = []
    page.on("request", lambda request: polls.append(request.url) if "/changes" in request.url else None)
    expect(page.locator(".grid-cell img")).to_have_count(6, timeout=60_000)
    expect(page.locator("#grid-progress")).to_contain_text("6 of 6 done")
    assert polls and all(f"/g/{grid.pk}/changes" in url for url in polls)
    headers = page.locator("thead th.grid-col-label .grid-label-text")
    expect(headers).to_have_text(["1", "2", "3"])
    assert axe_violations(page) == []
    shot(page, "grid-desktop")

    # Swap axes, hide a column, resize the cells.
    page.get_by_role("link", name="Swap axes").click()
    expect(page.locator("thead th.grid-col-label .grid-label-text")).to_have_text(["fox", "owl"])
    page.get_by_role("link", name="Hide column owl").click()
    expect(page.locator("thead th.grid-col-label")).to_have_count(1)
    before = page.locator(".grid-cell").first.bounding_box()["width"]
    page.get_by_label("Cell size", exact=True).fill("320")
    after = page.locator(".grid-cell").first.bounding_box()["width"]
    assert after > before + 100, (before, after)
    # Open a cell: its prediction's page.
    page.locator(".grid-cell a").first.click()
    page.wait_for_url(re.compile(r"/p/[a-z0-9]+$"))

    phone = new_page(viewport=PHONE, color_scheme="dark")
    phone.context.add_cookies(page.context.cookies())
    phone.goto(f"{base}/g/{grid.pk}")
    expect(phone.locator(".grid-cell img")).to_have_count(6)
    assert axe_violations(phone) == []
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"] + 1
    shot(phone, "grid-phone-dark")
    assert page.csp_violations == [] and phone.csp_violations == []


def test_the_grid_page_works_without_javascript(site, worker, cog_version, browser, alice):
    from app.services import grids

    grid = grids.create(
        alice, [cog_version], {"prompt": "a fox"}, [{"kind": "seed", "text": "1, 2"}], visibility="unlisted"
    )
    context = browser.new_context(java_script_enabled=False, viewport=DESKTOP)
    page = context.new_page()
    page.goto(f"{site.url}/g/{grid.pk}")
    for _ in range(30):
        if page.locator(".grid-cell img").count() == 2:
            break
        page.wait_for_timeout(1000)
        page.reload()
    expect(page.locator(".grid-cell img")).to_have_count(2)
    page.get_by_role("link", name="Hide column 2").click()
    expect(page.locator(".grid-cell img")).to_have_count(1)
    context.close()
