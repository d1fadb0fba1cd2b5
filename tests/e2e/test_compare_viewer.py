"""The compare viewer and restoring settings from a PNG, in Chromium: each
mode, the keys, one zoom for both images, touch on a phone, axe-core clean,
light and dark. Screenshots go to LIGHTBOX_SHOTS (default /tmp/shots-viewer)."""

import base64
import io
import os
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from PIL import Image, ImageDraw
from playwright.sync_api import expect

from app.models import Comparison
from app.services import storage
from tests.e2e.conftest import DESKTOP, PASSWORD, PHONE, axe_violations, log_in
from tests.web.conftest import SCHEMA, make_prediction, make_version, turbo_schema
from tests.web.pngs import A1111_TEXT, a1111_png

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SHOTS = Path(os.environ.get("LIGHTBOX_SHOTS", "/tmp/shots-viewer"))


def shot(page, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def picture(size, square):
    """A landscape in blocks, with a white square where `square` says: two
    of them differ there and only there."""
    image = Image.new("RGB", size, (40, 90, 160))
    draw = ImageDraw.Draw(image)
    width, height = size
    draw.rectangle((0, height * 2 // 3, width, height), fill=(60, 140, 70))
    draw.ellipse((width * 0.6, height * 0.1, width * 0.8, height * 0.1 + width * 0.2), fill=(250, 210, 60))
    if square:
        x, y = (round(value * scale) for value, scale in zip(square, size))
        draw.rectangle((x, y, x + width // 6, y + height // 6), fill=(255, 255, 255))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def pair(transactional_db):
    owner = get_user_model().objects.create_user("vera", "vera@example.com", PASSWORD)
    sd = make_version("local", "tiny-sd", __import__("copy").deepcopy(SCHEMA))
    turbo = make_version("local", "sd-turbo", turbo_schema())
    comparison = Comparison.objects.create(owner=owner, input={"prompt": "a lake"}, seed=42, visibility="public")
    a = make_prediction(sd, owner=owner, comparison=comparison, prompt="a lake at noon", outputs=0)
    b = make_prediction(turbo, owner=owner, comparison=comparison, prompt="a lake at noon", outputs=0)
    storage._save_output(a, 0, picture((512, 384), None), "image/png")
    # B is half A's size and has a white square: the heatmap shows it alone.
    storage._save_output(b, 0, picture((256, 192), (0.2, 0.3)), "image/png")
    return a, b


def transforms(page):
    return page.eval_on_selector_all("[data-layer]", "layers => layers.map((layer) => layer.style.transform)")


def test_every_mode_by_key_and_by_pointer_on_desktop(site, pair, new_page):
    a, b = pair
    page = new_page(viewport=DESKTOP)
    page.goto(f"{site.url}/p/{a.id}")
    expect(page.get_by_label("Compare with")).to_have_value(f"{b.id}:0")
    expect(page.get_by_role("link", name="Use seed")).to_be_visible()
    shot(page, "prediction-desktop")
    assert axe_violations(page) == []
    page.goto(f"{site.url}/c/{a.comparison_id}")
    shot(page, "comparison-desktop")
    assert axe_violations(page) == []
    page.get_by_role("button", name="Compare").click()
    expect(page).to_have_url(f"{site.url}/compare?a={a.id}%3A0&b={b.id}%3A0")
    expect(page.get_by_role("heading", level=1)).to_contain_text("local/tiny-sd and local/sd-turbo")
    expect(page.locator("[data-pane=a]")).to_be_visible()
    expect(page.locator("[data-pane=b]")).to_be_visible()
    expect(page.locator("[data-pane=diff]")).to_be_hidden()
    shot(page, "compare-side-desktop")
    assert axe_violations(page) == []

    # One zoom for both panes, by key and by the buttons; 0 fits again.
    page.keyboard.press("+")
    expect(page.locator("[data-zoom-level]")).to_have_text("1.3×")
    page.get_by_role("button", name="Zoom in").click()
    expect(page.locator("[data-zoom-level]")).to_have_text("1.6×")
    first = transforms(page)
    assert len(set(first)) == 1 and "scale(1.5625)" in first[0]
    # A drag on B pans A too.
    box = page.locator("[data-pane=b] [data-frame]").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2 + 40, box["y"] + box["height"] / 2 + 20, steps=4)
    page.mouse.up()
    panned = transforms(page)
    assert len(set(panned)) == 1 and panned != first
    # The arrow keys pan with the focus on the images.
    page.locator("[data-compare-stage]").focus()
    page.keyboard.press("ArrowLeft")
    assert transforms(page) != panned
    shot(page, "compare-side-zoomed-desktop")
    page.keyboard.press("0")
    expect(page.locator("[data-zoom-level]")).to_have_text("1×")

    # 2: the slider; ] moves its line, and a click puts it there.
    page.keyboard.press("2")
    expect(page.locator("[data-pane=overlay]")).to_be_visible()
    expect(page.locator("[data-pane=a]")).to_be_hidden()
    expect(page.get_by_label("Wipe position")).to_have_value("50")
    page.keyboard.press("]")
    expect(page.get_by_label("Wipe position")).to_have_value("55")
    frame = page.locator("[data-overlay]")
    box = frame.bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.25, box["y"] + box["height"] / 2)
    expect(page.get_by_label("Wipe position")).to_have_value("25")
    shot(page, "compare-slider-desktop")
    assert axe_violations(page) == []

    # 3 and F: flip between A and B in the same place.
    page.keyboard.press("3")
    expect(page.locator("[data-flip-status]")).to_have_text("Showing A")
    page.keyboard.press("f")
    expect(page.locator("[data-flip-status]")).to_have_text("Showing B")
    expect(page.locator(".compare-over")).to_have_css("visibility", "hidden")
    page.get_by_role("button", name="Flip").click()
    expect(page.locator("[data-flip-status]")).to_have_text("Showing A")

    # 4: the heatmap, made on the server, A's size, bright only at the square.
    page.keyboard.press("4")
    heat = page.locator("[data-pane=diff] img")
    expect(heat).to_be_visible()
    page.wait_for_function("() => document.querySelector('[data-pane=diff] img').naturalWidth > 0")
    assert heat.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [512, 384]
    expect(page.locator("[data-diff-stats]")).to_contain_text("B (256×192) is scaled to A's 512×384")
    shot(page, "compare-diff-desktop")
    assert axe_violations(page) == []
    # The mode radios work too, and say which mode is on.
    page.get_by_label("Side by side").check()
    expect(page.locator("[data-pane=b]")).to_be_visible()
    assert page.csp_violations == []


def test_on_a_phone_in_dark_mode_taps_and_buttons_do_it_all(site, pair, browser):
    a, b = pair
    context = browser.new_context(viewport=PHONE, color_scheme="dark", has_touch=True, is_mobile=True)
    try:
        page = context.new_page()
        page.goto(f"{site.url}/compare?a={a.id}&b={b.id}")
        expect(page.locator("[data-pane=a]")).to_be_visible()
        shot(page, "compare-side-phone-dark")
        assert axe_violations(page) == []
        page.get_by_text("Slider", exact=False).first.tap()
        expect(page.locator("[data-pane=overlay]")).to_be_visible()
        box = page.locator("[data-overlay]").bounding_box()
        page.touchscreen.tap(box["x"] + box["width"] * 0.75, box["y"] + box["height"] / 2)
        expect(page.get_by_label("Wipe position")).to_have_value("75")
        page.get_by_role("button", name="Zoom in").tap()
        expect(page.locator("[data-zoom-level]")).to_have_text("1.3×")
        shot(page, "compare-slider-phone-dark")
        page.get_by_role("button", name="Fit").tap()
        # Pinch: two fingers on A move apart; B zooms with it.
        zoom = page.evaluate(
            """() => {
              const frame = document.querySelector("[data-pane=overlay] [data-frame]");
              const box = frame.getBoundingClientRect();
              const y = box.top + box.height / 2;
              const fire = (type, id, x) => frame.dispatchEvent(new PointerEvent(type, {
                pointerId: id, pointerType: "touch", clientX: x, clientY: y, bubbles: true, isPrimary: id === 1 }));
              fire("pointerdown", 1, box.left + box.width * 0.4);
              fire("pointerdown", 2, box.left + box.width * 0.6);
              fire("pointermove", 2, box.left + box.width * 0.8);
              fire("pointerup", 1, box.left + box.width * 0.4);
              fire("pointerup", 2, box.left + box.width * 0.8);
              return document.querySelector("[data-zoom-level]").textContent;
            }"""
        )
        assert zoom == "2×"
        page.get_by_text("Difference", exact=False).first.tap()
        expect(page.locator("[data-pane=diff] img")).to_be_visible()
        shot(page, "compare-diff-phone-dark")
        assert axe_violations(page) == []
    finally:
        context.close()


def test_a_png_chosen_on_the_playground_fills_its_form(site, pair, new_page, tmp_path):
    a, _ = pair
    page = new_page(viewport=DESKTOP, color_scheme="dark")
    log_in(page, site.url, "vera")
    data = a1111_png(A1111_TEXT.replace("Sampler: DPM++ 2M, Schedule type: Karras", "Sampler: PLMS"))
    # Dropped on the playground's form (its prompt field), as from a file manager.
    page.evaluate(
        """async (encoded) => {
          const bytes = Uint8Array.from(atob(encoded), (c) => c.charCodeAt(0));
          const transfer = new DataTransfer();
          transfer.items.add(new File([bytes], "from-a1111.png", { type: "image/png" }));
          const target = document.querySelector("#id_prompt");
          for (const type of ["dragover", "drop"]) {
            target.dispatchEvent(new DragEvent(type, { dataTransfer: transfer, bubbles: true, cancelable: true }));
          }
        }""",
        base64.b64encode(data).decode(),
    )
    summary = page.locator("[data-restored]")
    expect(summary).to_contain_text("Restored from AUTOMATIC1111")
    expect(summary).to_be_focused()
    expect(summary).to_contain_text("Clip skip")
    expect(page.get_by_label("Prompt", exact=True)).to_have_value(
        "a red fox in fresh snow, golden hour,\n(masterpiece:1.2), detailed fur"
    )
    expect(page.get_by_label("Seed")).to_have_value("1234567890")
    expect(page.get_by_label("Scheduler")).to_have_value("PNDM")
    expect(page.locator("#playground-form input[name=version]:checked")).to_have_count(1)
    shot(page, "playground-restored-desktop-dark")
    assert axe_violations(page) == []

    # Pasted text, and a file that is not a PNG: a message at the field.
    page.get_by_text("Or paste its parameters text").click()  # the panel stays open after a restore
    page.get_by_label("Or its parameters text").fill("a heron\nSteps: 2, Sampler: Euler, Seed: 9")
    page.get_by_role("button", name="Restore settings").click()
    expect(page.get_by_label("Prompt", exact=True)).to_have_value("a heron")
    expect(page.locator("details[data-restore]")).to_have_attribute("open", "")
    # The swapped-in panel is set up (app.js) before a file is chosen on it.
    expect(page.locator("details[data-restore][data-ready]")).to_have_count(1)
    bad = tmp_path / "not.png"
    bad.write_bytes(b"GIF89a nothing")
    page.get_by_label("A PNG made by Lightbox, AUTOMATIC1111 or ComfyUI").set_input_files(str(bad))
    expect(page.locator("#restore-png-error")).to_have_text("This is not a PNG file.")
    # Only the panel came back: the form keeps what it had.
    expect(page.get_by_label("Prompt", exact=True)).to_have_value("a heron")
    shot(page, "playground-restore-error-desktop-dark")
    assert axe_violations(page) == []
    assert page.csp_violations == [], page.csp_violations[:3]
