"""Grids in the browser (issue 14): made from the playground, watched as they
fill in through the one poll, explored (swap, hide, size), on desktop and
phone, light and dark, axe clean."""

import copy
import io
import re
from pathlib import Path

import pytest
from django.utils import timezone
from PIL import Image, ImageDraw
from playwright.sync_api import expect

from app.models import Grid, Prediction
from tests.e2e.conftest import DESKTOP, PHONE, axe_violations, screenshot, sign_up
from tests.grids.conftest import grid_tasks  # noqa: F401
from tests.web.conftest import SCHEMA, make_version

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
    # The poll's last answer gave the compare picker the cells done since the page loaded.
    expect(page.get_by_label("Compare", exact=True).locator("option")).to_have_count(6)
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


def picture(index):
    """A small scene, the sun further right in each cell, so any two differ."""
    image = Image.new("RGB", (128, 96), (40, 90, 160))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 64, 128, 96), fill=(60, 140, 70))
    draw.ellipse((10 + index * 25, 10, 34 + index * 25, 34), fill=(250, 210, 60))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def finished_grid(alice, queued, grid_tasks, settings):  # noqa: F811 (the fixture imported above)
    """A 2 × 2 grid of alice's (guidance scale across, two models down),
    every cell done with its own image, made without a worker."""
    from app.services import grids, storage

    settings.MAX_CONCURRENT = settings.RATE_LIMIT_PER_MINUTE = None
    versions = [make_version("local", name, copy.deepcopy(SCHEMA)) for name in ("tiny-sd", "tiny-sdxl")]
    grid = grids.create(
        alice,
        versions,
        {"prompt": "a lake at noon"},
        [{"kind": "field", "field": "guidance_scale", "text": "3, 7.5"}, {"kind": "version"}],
        visibility="unlisted",
    )
    grids.materialise(grid.pk)
    for index, prediction in enumerate(Prediction.objects.filter(comparison__grid=grid).order_by("created_at")):
        storage._save_output(prediction, 0, picture(index), "image/png")
        Prediction.objects.filter(pk=prediction.pk).update(status="succeeded", completed_at=timezone.now())
    return grid


def cell_of(grid, scale, model):
    return Prediction.objects.get(
        comparison__grid=grid, comparison__grid_x=["3", "7.5"].index(scale), version__model__name=model
    )


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_pick_two_cells_and_open_the_compare_viewer(site, finished_grid, new_page, viewport):
    kind = "phone" if viewport is PHONE else "desktop"
    a, b = cell_of(finished_grid, "3", "tiny-sd"), cell_of(finished_grid, "7.5", "tiny-sdxl")
    page = new_page(viewport=viewport)
    page.goto(f"{site.url}/g/{finished_grid.pk}")
    expect(page.locator(".grid-cell img")).to_have_count(4)
    sd, sdxl = finished_grid.axes[1]["labels"]  # "local/tiny-sd <version id>"
    first, second = page.get_by_label("Compare", exact=True), page.get_by_label("with", exact=True)
    labels = [f"guidance scale = {scale}, Model = {model}" for model in (sd, sdxl) for scale in ("3", "7.5")]
    expect(first.locator("option")).to_have_text(labels)
    shot(page, f"grid-compare-pick-{kind}")
    assert axe_violations(page) == []
    assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"] + 1
    # By keyboard: choose in each list, then Enter on the button.
    first.select_option(label=labels[0])
    second.focus()
    second.select_option(label=labels[3])
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Compare", exact=True)).to_be_focused()
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{site.url}/compare?a={a.pk}%3A0&b={b.pk}%3A0")
    expect(page.get_by_role("heading", level=1)).to_contain_text("local/tiny-sd and local/tiny-sdxl")
    expect(page.locator("[data-pane=a]")).to_be_visible()
    expect(page.locator("[data-pane=b]")).to_be_visible()
    assert axe_violations(page) == []
    assert page.csp_violations == []
