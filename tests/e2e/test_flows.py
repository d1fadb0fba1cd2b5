"""What a person does in the browser, step by step, asserting what they see."""

import re

import pytest
from playwright.sync_api import expect

from app.models import Comparison, Prediction
from tests.conftest import wait_for_status
from tests.e2e.conftest import screenshot, sign_up

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_sign_up_compare_publish_share_find_and_delete(site, worker, two_versions, new_page):
    base = site.url
    page = new_page()

    # Sign up: the new account is signed in.
    sign_up(page, base, "dora")
    expect(page.get_by_role("link", name="dora")).to_be_visible()

    # Run a comparison of two versions.
    page.get_by_role("checkbox", name=re.compile(r"^local\/tiny-sd ")).check()
    page.get_by_role("checkbox", name=re.compile(r"^local\/tiny-sdxl ")).check()
    expect(page.get_by_role("button", name="Run 2 models")).to_be_visible()
    page.get_by_label("Prompt", exact=True).fill("a lighthouse on a cliff at dusk")
    page.get_by_label("Num inference steps").fill("6")
    page.get_by_role("button", name="Run 2 models").click()
    page.wait_for_url(re.compile(r"/c/[a-z0-9]+$"))

    # Watch both cards finish, with their images.
    cards = page.locator("article.card")
    expect(cards).to_have_count(2)
    expect(cards.locator("[data-status]")).to_have_text(["Succeeded", "Succeeded"], timeout=30_000)
    expect(cards.locator(".card-images img")).to_have_count(2)
    for card in cards.all():
        expect(card.locator("progress")).to_have_attribute("value", "100")
        expect(card.locator(".logs")).to_contain_text("step 6/6")
    seeds = cards.locator(".facts div:first-child dd").all_inner_texts()
    assert len(set(seeds)) == 1, seeds  # one seed for both

    # Publish it.
    page.get_by_role("button", name="Publish to the gallery").click()
    expect(page.get_by_role("status")).to_contain_text("Now public")
    share_url = page.url

    # The share link in a fresh, anonymous browser shows the image.
    stranger = new_page()
    stranger.goto(share_url)
    expect(stranger.get_by_role("link", name="Log in")).to_be_visible()
    expect(stranger.get_by_role("heading", level=1)).to_have_text("a lighthouse on a cliff at dusk")
    image = stranger.locator(".card-images img").first
    expect(image).to_be_visible()
    assert image.evaluate("img => img.complete && img.naturalWidth > 0")

    # Found in the gallery by its prompt (the search updates as one types).
    stranger.goto(base + "/gallery")
    stranger.get_by_label("Search prompts").fill("lighthouse")
    expect(stranger.locator(".tile")).to_have_count(2)
    expect(stranger.locator(".tile-prompt").first).to_have_text("a lighthouse on a cliff at dusk")
    stranger.get_by_label("Search prompts").fill("submarine")
    expect(stranger.get_by_text("Nothing here matches")).to_be_visible()

    # Delete one prediction from its page: it is gone, for its owner and for others.
    page.locator("article.card").first.get_by_role("link", name="Details").click()
    prediction_url = page.url
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete").click()
    expect(page.get_by_role("status")).to_contain_text("Prediction deleted")
    stranger.goto(prediction_url)
    expect(stranger.get_by_role("heading", name="Not found")).to_be_visible()
    stranger.goto(base + "/gallery?q=lighthouse")
    expect(stranger.locator(".tile")).to_have_count(1)

    assert page.csp_violations == [] and stranger.csp_violations == []


def test_cancel_a_running_prediction(site, worker, two_versions, new_page):
    base = site.url
    version = two_versions[0]
    page = new_page()
    sign_up(page, base, "erin")
    page.goto(f"{base}/?version={version.id}")
    page.get_by_label("Prompt", exact=True).fill("a slow painting")
    page.get_by_label("Num inference steps").fill("40")
    page.get_by_text(f"More options for {version.model} only").click()
    page.get_by_label("Step delay").fill("0.5")  # 20 s in all: slow enough to cancel
    page.get_by_role("button", name="Run 1 model").click()
    page.wait_for_url(re.compile(r"/c/[a-z0-9]+$"))

    card = page.locator("article.card")
    expect(card.locator("[data-status]")).to_have_text("Processing", timeout=15_000)
    expect(card.locator(".logs")).to_contain_text("step 2/40", timeout=15_000)
    card.get_by_role("button", name="Cancel").click()

    expect(card.locator("[data-status]")).to_have_text("Canceled")
    expect(card.get_by_role("button", name="Cancel")).to_have_count(0)
    prediction = Prediction.objects.get(comparison=Comparison.objects.get())
    assert wait_for_status(prediction.id).status == "canceled"
    page.reload()
    expect(page.locator("article.card [data-status]")).to_have_text("Canceled")
    assert page.csp_violations == []


def test_without_javascript_the_pages_work_by_reloading(site, worker, two_versions, browser):
    from tests.e2e.conftest import DESKTOP

    context = browser.new_context(viewport=DESKTOP, java_script_enabled=False)
    page = context.new_page()
    try:
        sign_up(page, site.url, "gus")
        # Choosing other versions without JavaScript: a plain GET shows their fields.
        page.get_by_role("checkbox", name=re.compile(r"^local\/tiny-sdxl ")).uncheck()
        page.get_by_role("button", name="Show the fields of these models").click()
        expect(page.get_by_role("button", name="Run 1 model")).to_be_visible()
        page.get_by_label("Prompt", exact=True).fill("a quiet pond without scripts")
        page.get_by_role("button", name="Run 1 model").click()
        page.wait_for_url(re.compile(r"/c/[a-z0-9]+$"))
        prediction = Prediction.objects.get(comparison=Comparison.objects.get())
        wait_for_status(prediction.id)
        page.reload()
        expect(page.locator("article.card [data-status]")).to_have_text("Succeeded")
        expect(page.locator("article.card img")).to_have_count(1)
    finally:
        context.close()


def test_paint_a_mask_on_an_uploaded_image(site, worker, cog_server, new_page, tmp_path):
    """Inpainting input: an image upload and a mask painted on it in the browser."""
    import base64
    import copy
    import io

    from PIL import Image

    from app.services import catalog

    source = catalog.import_version(cog_server.url, "local/tiny-sd")
    schema = copy.deepcopy(source.openapi_schema)
    props = schema["components"]["schemas"]["Input"]["properties"]
    props["image"] = {
        "type": "string",
        "format": "uri",
        "title": "Image",
        "x-order": 20,
        "description": "Input image for img2img or inpainting.",
    }
    props["mask"] = {
        "type": "string",
        "format": "uri",
        "title": "Mask",
        "x-order": 21,
        "description": "White areas are redrawn.",
    }
    version = catalog.add_version("local", "tiny-inpaint", "cog", cog_server.url, schema, source.cog_version)
    catalog.refresh_availability(version, max_age=0)
    picture = tmp_path / "harbour.png"
    Image.new("RGB", (200, 100), (30, 90, 160)).save(picture)

    page = new_page()
    sign_up(page, site.url, "hana")
    page.goto(f"{site.url}/?version={version.id}")
    page.get_by_label("Prompt", exact=True).fill("a boat in the harbour")
    page.get_by_text("Image to image and inpainting").click()
    page.get_by_label("Image", exact=True).set_input_files(str(picture))
    canvas = page.get_by_label("Mask painter: drag to paint the area to redraw")
    expect(canvas).to_be_visible()
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()

    def stroke(start, end):
        page.mouse.move(box["x"] + box["width"] * start, box["y"] + box["height"] * 0.5)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * end, box["y"] + box["height"] * 0.5, steps=8)
        page.mouse.up()

    undo = page.get_by_role("button", name="Undo stroke")
    expect(undo).to_be_disabled()
    stroke(0.2, 0.4)
    stroke(0.7, 0.9)
    stroke(0.05, 0.1)
    page.keyboard.press("Control+z")  # the canvas has the focus after a stroke
    undo.click()  # the second stroke goes too; the first stays
    screenshot(page, "mask-painter-desktop")
    page.get_by_role("button", name="Run 1 model").click()
    page.wait_for_url(re.compile(r"/c/[a-z0-9]+$"))
    expect(page.locator("article.card [data-status]")).to_have_text("Succeeded", timeout=30_000)

    given = Prediction.objects.get().input
    assert given["image"].startswith("data:image/png;base64,")
    mask = Image.open(io.BytesIO(base64.b64decode(given["mask"].split(",", 1)[1]))).convert("L")
    assert mask.size == (200, 100)
    assert mask.getpixel((60, 50)) == 255  # painted
    assert mask.getpixel((160, 50)) == 0  # painted, then undone
    assert mask.getpixel((15, 50)) == 0  # painted, then undone by Ctrl+Z
    assert mask.getpixel((190, 10)) == 0  # left alone


def test_zoom_into_a_predictions_images(site, new_page, transactional_db):
    """The full-size view: open, fit to the screen and back, step through the
    images with the arrow keys, close with Escape."""
    from tests.web.conftest import SCHEMA, make_prediction, make_version

    prediction = make_prediction(make_version("local", "tiny-sd", SCHEMA), outputs=3)
    page = new_page()
    page.goto(f"{site.url}/p/{prediction.id}")
    page.get_by_role("link", name="Zoom image 1").click()
    first = page.get_by_role("dialog", name="Image 1, full size")
    expect(first).to_be_visible()
    first.get_by_role("button", name="Fit to screen").click()
    expect(first).to_have_class(re.compile(r"\bfit\b"))
    expect(first.get_by_role("button", name="Actual size")).to_be_visible()
    page.screenshot(path="artifacts/screenshots/zoom-desktop.png")  # the overlay fills the window
    page.keyboard.press("ArrowRight")
    expect(page.get_by_role("dialog", name="Image 2, full size")).to_be_visible()
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")  # wraps round to the last
    expect(page.get_by_role("dialog", name="Image 3, full size")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.get_by_role("dialog")).to_have_count(0)
    assert page.evaluate("location.hash") == "#result"


def test_the_gallery_loads_more_as_one_scrolls(site, new_page, transactional_db):
    from tests.web.conftest import SCHEMA, make_prediction, make_version

    version = make_version("local", "tiny-sd", SCHEMA)
    for index in range(30):
        make_prediction(version, prompt=f"tile number {index:02}")
    page = new_page()
    page.goto(site.url + "/gallery")
    expect(page.locator(".tile")).to_have_count(24)
    expect(page.get_by_role("link", name="Older →")).to_be_visible()

    page.locator(".grid-more").scroll_into_view_if_needed()

    expect(page.locator(".tile")).to_have_count(30)
    expect(page.locator(".tile-prompt").last).to_have_text("tile number 00")
    # The links under the grid follow: nothing older, a way back to the newest.
    expect(page.get_by_role("link", name="Older →")).to_have_count(0)
    expect(page.get_by_role("link", name="Newest")).to_be_visible()


def test_a_comparison_runs_from_the_keyboard_alone(site, worker, two_versions, new_page):
    page = new_page()
    sign_up(page, site.url, "ivan")
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Enter")
    for _ in range(60):  # through the model checkboxes to the prompt
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.name") == "prompt":
            break
    page.keyboard.type("a keyboard-only lighthouse")
    for _ in range(60):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent.trim()") == "Run 2 models":
            break
    # Focus is visible where it is.
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none", outline
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/c/[a-z0-9]+$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("a keyboard-only lighthouse")
    expect(page.locator("article.card [data-status]")).to_have_text(["Succeeded", "Succeeded"], timeout=30_000)


def test_report_a_prediction_from_the_keyboard(site, new_page, transactional_db):
    """A visitor reports someone's prediction: the form opens from a disclosure,
    a missing detail is pointed out by the field, the thanks replace the form."""
    from django.contrib.auth import get_user_model

    from app.models import Report
    from tests.e2e.conftest import PASSWORD, PHONE, axe_violations, log_in, screenshot
    from tests.web.conftest import SCHEMA, make_prediction, make_version

    owner = get_user_model().objects.create_user("olga", "olga@example.com", PASSWORD)
    reporter = get_user_model().objects.create_user("pavel", "pavel@example.com", PASSWORD)
    version = make_version("local", "tiny-sd", SCHEMA)
    prediction = make_prediction(version, owner=owner, prompt="a harbour at night, fireworks")
    comparison = Comparison.objects.create(owner=owner, seed=42, input={"prompt": "a harbour at night, fireworks"})
    make_prediction(version, owner=owner, prompt="a harbour at night, fireworks", comparison=comparison)

    page = new_page()
    log_in(page, site.url, "pavel")
    page.goto(f"{site.url}/p/{prediction.id}")
    summary = page.locator("summary", has_text="Report")
    summary.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("group", name="What is wrong with it?")).to_be_visible()
    page.keyboard.press("Tab")
    expect(page.get_by_label("Sexual content")).to_be_focused()
    for _ in range(4):
        page.keyboard.press("ArrowDown")
    expect(page.get_by_label("Other")).to_be_checked()
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")  # past the details to the button
    expect(page.get_by_role("button", name="Send report")).to_be_focused()
    page.keyboard.press("Enter")

    expect(page.get_by_role("alert")).to_contain_text("Your report was not sent.")
    expect(page.get_by_text("Say what is wrong when you choose “Other”.")).to_be_visible()
    assert axe_violations(page) == []
    page.evaluate("window.scrollTo(0, 0)")  # the sticky top bar at the top of the full-page shot
    screenshot(page, "report-error-desktop")
    page.get_by_label("Details").fill("The fireworks spell out a phone number: advertising.")
    page.get_by_role("button", name="Send report").click()

    thanks = page.get_by_role("status")
    expect(thanks).to_have_text("Thanks, moderators will review it.")
    expect(thanks).to_be_focused()
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, "report-sent-desktop")
    report = Report.objects.get()
    assert (report.prediction_id, report.reporter, report.reason) == (prediction.id, reporter, "other")
    assert report.text == "The fireworks spell out a phone number: advertising."

    # On a phone, in dark mode, without an account: the comparison's form fits.
    phone = new_page(viewport=PHONE, color_scheme="dark")
    phone.goto(f"{site.url}/c/{comparison.id}")
    phone.locator("summary", has_text="Report").click()
    phone.get_by_label("Spam").focus()
    phone.keyboard.press("Escape")  # closes it again
    expect(phone.get_by_label("Spam")).to_be_hidden()
    expect(phone.locator("summary", has_text="Report")).to_be_focused()
    phone.locator("summary", has_text="Report").click()
    phone.get_by_label("Spam").check()
    expect(phone.get_by_role("button", name="Send report")).to_be_visible()
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    assert axe_violations(phone) == []
    screenshot(phone, "report-form-phone")
    phone.get_by_role("button", name="Send report").click()
    expect(phone.get_by_role("status")).to_have_text("Thanks, moderators will review it.")
    assert Report.objects.filter(comparison=comparison, reporter=None, reason="spam").exists()
    assert page.csp_violations == [] and phone.csp_violations == []
