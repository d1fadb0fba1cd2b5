"""The playground's journeys of issue 17, as a new user walks them, on desktop
and phone: offline models, values out of range, image inputs, errors, the API
snippet, and the smaller things (landing, history, shortcuts, presets)."""

import copy
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from PIL import Image
from playwright.sync_api import expect

from app.models import Comparison, Prediction
from app.services import catalog, comparisons
from tests.conftest import wait_for_status
from tests.e2e.conftest import DESKTOP, LAYOUTS, PASSWORD, PHONE, axe_violations, log_in, sign_up

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SHOTS = Path(os.environ.get("LIGHTBOX_SHOTS", "/work/shots/ux-play"))


def shot(page, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _variant(source, owner, name, location, change):
    """Another version with `source`'s schema changed by `change`, served by
    the Cog server at `location` (which drops inputs it does not know)."""
    schema = copy.deepcopy(source.openapi_schema)
    change(schema["components"]["schemas"]["Input"]["properties"])
    version = catalog.add_version(owner, name, "cog", location, schema, source.cog_version)
    catalog.refresh_availability(version, max_age=0)
    return version


def _turbo(props):
    props["num_inference_steps"].update(minimum=1, maximum=4, default=1)


def _inpainting(props):
    props["mask"] = {
        "type": "string",
        "format": "uri",
        "title": "Mask",
        "x-order": 21,
        "description": "White is redrawn.",
    }


def _offline(source):
    url = catalog.local_url("sd-1.5")
    version = catalog.add_version("local", "sd-1.5", "cog", url, copy.deepcopy(source.openapi_schema))
    version.set_availability(False, f"The model server at {url} does not answer (could not connect).")
    return version


def _png(path, size, color=(30, 90, 160)):
    Image.new("RGB", size, color).save(path)
    return path


@pytest.mark.parametrize("layout", ["desktop", "phone"])
def test_offline_models_are_apart_and_never_block_a_run(site, worker, two_versions, new_page, layout):
    offline = _offline(two_versions[0])
    page = new_page(viewport=DESKTOP if layout == "desktop" else PHONE)
    sign_up(page, site.url, f"olga{layout}")

    # The working models come first and are chosen; on a phone too, at once.
    sd = page.get_by_role("checkbox", name=re.compile(r"^local\/tiny-sd "))
    expect(sd).to_be_checked()
    expect(page.get_by_role("checkbox", name=re.compile(r"^local\/tiny-sdxl "))).to_be_checked()
    assert sd.bounding_box()["y"] < page.viewport_size["height"]
    expect(page.get_by_role("button", name="Run 2 models")).to_be_visible()

    # The offline one is apart, cannot be ticked, and says why and what to do.
    summary = page.get_by_text("1 offline model: why, and how to start it")
    expect(summary).to_be_visible()
    summary.click()
    offline_box = page.get_by_role("checkbox", name=re.compile(r"^local\/sd-1\.5"))
    expect(offline_box).to_be_disabled()
    why = page.locator(".version-list-offline")
    expect(why).to_contain_text(f"The model server at {offline.location} does not answer (could not connect).")
    expect(why).to_contain_text("To run it, start it with python manage.py serve_model sd-1.5")
    shot(page, f"playground-offline-{layout}")
    assert axe_violations(page) == []

    # A run goes ahead on the models that work.
    page.get_by_label("Prompt", exact=True).fill("a lighthouse at dusk")
    page.get_by_role("button", name="Run 2 models").click()
    page.wait_for_url(re.compile(r"/c/[a-z0-9]+$"))
    expect(page.locator("article.card")).to_have_count(2)
    expect(page.locator(".form-errors")).to_have_count(0)

    # The README's section is one link away.
    page.goto(site.url + "/")
    page.get_by_text("1 offline model").click()
    page.get_by_role("link", name="How to start model servers").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Starting model servers")
    expect(page.locator("pre.readme")).to_contain_text("python manage.py serve_model NAME")
    assert page.csp_violations == []


def test_add_a_version_to_a_comparison_defaults_to_one_that_runs(site, worker, two_versions, new_page):
    offline = _offline(two_versions[0])
    page = new_page()
    sign_up(page, site.url, "omar")
    page.goto(f"{site.url}/?version={two_versions[0].id}")
    page.get_by_label("Prompt", exact=True).fill("a harbour")
    page.get_by_role("button", name="Run 1 model").click()
    page.wait_for_url(re.compile(r"/c/[a-z0-9]+$"))

    select = page.get_by_label("Add a version")
    expect(select).to_have_value(two_versions[1].id)
    expect(select.locator(f'option[value="{offline.id}"]')).to_be_disabled()
    page.get_by_role("button", name="Run it too").click()
    expect(page.locator("article.card")).to_have_count(2)
    expect(page.locator("article.card [data-status]")).to_have_text(["Succeeded", "Succeeded"], timeout=30_000)


def test_values_out_of_every_range_are_refused_and_a_partial_fit_is_shown(site, worker, two_versions, new_page):
    sd = two_versions[0]
    turbo = _variant(sd, "local", "tiny-turbo", sd.location, _turbo)
    page = new_page()
    sign_up(page, site.url, "wendy")
    page.goto(f"{site.url}/?version={sd.id}&version={turbo.id}")
    page.get_by_label("Prompt", exact=True).fill("a red kite over hills")

    # The browser knows the ranges: the union of the chosen models'.
    width = page.get_by_label("Width")
    expect(width).to_have_attribute("min", "16")
    expect(width).to_have_attribute("max", "1024")
    expect(page.get_by_label("Num Inference Steps")).to_have_attribute("max", "100")
    width.fill("10")
    page.get_by_role("button", name="Run 2 models").click()
    assert width.evaluate("input => input.validity.rangeUnderflow")
    assert "/c/" not in page.url

    # A browser that does not check: the server refuses, with one summary at the top.
    page.evaluate("document.querySelector('form[data-playground]').noValidate = true")
    page.get_by_label("Num Inference Steps").fill("101")
    page.get_by_label("Guidance Scale").fill("-5")
    page.get_by_label("Num Outputs").fill("0")
    page.get_by_role("button", name="Run 2 models").click()
    summary = page.locator("[data-error-summary]")
    expect(summary).to_be_focused()
    expect(summary).to_contain_text("Nothing was run. Fix 4 problems:")
    expect(summary.get_by_role("link")).to_have_text(
        [
            "Width: Must be from 16 to 1024.",
            "Num Inference Steps: Must be from 1 to 100. (1 to 100 for tiny-sd; 1 to 4 for tiny-turbo.)",
            "Guidance Scale: Must be from 0 to 20.",
            "Num Outputs: Must be from 1 to 4.",
        ]
    )
    assert summary.bounding_box()["y"] < DESKTOP["height"]
    shot(page, "playground-errors-desktop")
    assert axe_violations(page) == []
    summary.get_by_role("link", name=re.compile("^Width")).click()
    assert page.url.endswith("#id_width")
    expect(page.locator("#id_width_error")).to_have_text("Must be from 16 to 1024.")
    assert Comparison.objects.count() == 0

    # Values some models take: run, and the mapping is said above the cards.
    page.get_by_label("Width").fill("64")
    page.get_by_label("Num Inference Steps").fill("8")
    page.get_by_label("Guidance Scale").fill("5")
    page.get_by_label("Num Outputs").fill("1")
    page.get_by_label("Seed").fill("-1")  # random, as in AUTOMATIC1111
    page.get_by_role("button", name="Run 2 models").click()
    page.wait_for_url(re.compile(r"/c/[a-z0-9]+$"))
    adjusted = page.get_by_role("region", name="Not every model took every value")
    expect(adjusted).to_contain_text(
        "local/tiny-turbo: num_inference_steps 8 → 4 (above its maximum 4, the nearest it takes)"
    )
    meta = page.locator(".comparison-head .meta")
    expect(meta).to_contain_text("num_inference_steps 8 for tiny-sd · 4 for tiny-turbo")
    expect(meta).to_contain_text("width 64")
    seed = Comparison.objects.get().seed
    assert seed >= 0
    expect(meta).to_contain_text(f"Seed {seed}")
    expect(page.locator("article.card [data-status]")).to_have_text(["Succeeded", "Succeeded"], timeout=30_000)
    shot(page, "comparison-adjusted-desktop")
    assert page.csp_violations == []


def test_image_inputs_are_kept_shown_and_sent_on_and_the_api_snippet_runs(
    site, worker, two_versions, new_page, tmp_path, settings
):
    # A small limit, so the browser scales a picture down quickly on a slow machine.
    settings.UPLOAD_MAX_PIXELS = 1000 * 1000
    version = _variant(two_versions[1], "local", "tiny-inpaint", two_versions[1].location, _inpainting)
    page = new_page()
    sign_up(page, site.url, "ines")
    page.goto(f"{site.url}/?version={version.id}")
    page.get_by_label("Prompt", exact=True).fill("a boat in the harbour")
    page.get_by_text("Image to image and inpainting").click()
    image_input = page.get_by_label("Image", exact=True)

    # Not an image: told at once, nothing kept.
    image_input.set_input_files({"name": "notes.txt", "mimeType": "text/plain", "buffer": b"just words"})
    expect(page.locator("[data-image-drop=image] [data-image-error]")).to_have_text(
        "Choose an image file (PNG, JPEG or WEBP)."
    )
    assert image_input.evaluate("input => input.files.length") == 0

    # A picture past the pixel limit is scaled down here, and previewed.
    big = _png(tmp_path / "big.png", (1500, 1200))
    image_input.set_input_files(str(big))
    preview = page.locator("[data-image-drop=image] [data-image-preview] img")
    expect(preview).to_be_visible()
    width, height = page.evaluate(
        "async () => { const f = document.querySelector('input[name=image]').files[0];"
        " const b = await createImageBitmap(f); return [b.width, b.height]; }"
    )
    assert width * height <= 1000 * 1000 and abs(width / height - 1.25) < 0.01

    # Paint a mask, then send a form the server refuses: both come back.
    canvas = page.get_by_label("Mask painter: drag to paint the area to redraw")
    expect(canvas).to_be_visible()
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.5)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.5, steps=6)
    page.mouse.up()
    painted = page.locator("input[name=mask_painted]").input_value()
    assert painted.startswith("data:image/png;base64,")
    page.evaluate("document.querySelector('form[data-playground]').noValidate = true")
    page.get_by_label("Width").fill("9999")
    page.get_by_role("button", name="Run 1 model").click()
    expect(page.locator("[data-error-summary]")).to_contain_text("Width: Must be from 16 to 1024.")
    expect(preview).to_be_visible()
    assert preview.get_attribute("src").startswith("data:image/png;base64,")
    expect(page.get_by_text("Remove this image")).to_be_visible()
    expect(canvas).to_be_visible()
    assert page.locator("input[name=mask_painted]").input_value() == painted
    shot(page, "playground-image-kept-desktop")
    assert axe_violations(page) == []

    page.get_by_label("Width").fill("128")
    page.get_by_role("button", name="Run 1 model").click()
    page.wait_for_url(re.compile(r"/c/[a-z0-9]+$"))
    # The comparison's header shows what it started from.
    expect(page.locator(".input-images img")).to_have_count(2)
    expect(page.locator(".input-images figcaption")).to_have_text(["Image to start from", "Mask"])
    expect(page.locator("article.card [data-status]")).to_have_text("Succeeded", timeout=30_000)
    shot(page, "comparison-images-desktop")

    # The prediction page: thumbnails, not base64 text.
    page.locator("article.card").get_by_role("link", name="Details").click()
    thumbs = page.locator("img.input-thumb")
    expect(thumbs).to_have_count(2)
    assert all(thumb.evaluate("img => img.complete && img.naturalWidth > 0") for thumb in thumbs.all())
    expect(page.locator(".input-table")).not_to_contain_text("base64")
    shot(page, "prediction-images-desktop")
    prediction_url = page.url

    # The API snippet runs as it is, with the profile's variables.
    python = page.locator("#python-snippet").inner_text()
    curl = page.locator("#curl-snippet").inner_text()
    assert 'open("input.png", "rb")' in python and 'open("mask.png", "rb")' in python
    page.goto(site.url + "/account/")
    expect(page.locator("#tokens-title ~ p.help")).to_contain_text("REPLICATE_BASE_URL")
    page.get_by_role("button", name="Create a token").click()
    token = page.locator("#new-token").inner_text().strip()
    _png(tmp_path / "input.png", (128, 64))
    _png(tmp_path / "mask.png", (128, 64), (255, 255, 255))
    env = {**os.environ, "REPLICATE_BASE_URL": site.url, "REPLICATE_API_TOKEN": token}
    ran = subprocess.run(
        [sys.executable, "-c", python], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=90
    )
    assert ran.returncode == 0, ran.stderr
    assert "/files/" in ran.stdout or "http" in ran.stdout
    ran = subprocess.run(["bash", "-c", curl], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=90)
    assert '"status": "succeeded"' in ran.stdout.replace('":"', '": "'), ran.stdout[:500]
    runs = Prediction.objects.filter(source="api").order_by("created_at")
    assert runs.count() == 2 and all(run.input["mask"].startswith("data:image/png") for run in runs)

    # Remix keeps image and mask; any output goes to image to image.
    page.goto(prediction_url)
    page.get_by_role("link", name="Remix", exact=True).click()
    expect(page.locator("[data-image-drop=image] [data-image-preview] img")).to_be_visible()
    expect(page.locator("[data-image-drop=mask] [data-image-preview] img")).to_be_visible()
    expect(page.get_by_label("Prompt", exact=True)).to_have_value("a boat in the harbour")
    page.goto(prediction_url)
    page.get_by_role("link", name="Use in image to image").first.click()
    expect(page.locator("[data-image-drop=image] [data-image-preview] img")).to_be_visible()
    assert page.locator("input[name=image_kept]").input_value().startswith("data:image/png;base64,")

    # Drop and paste an image on the playground: each previewed.
    page.goto(f"{site.url}/?version={version.id}")
    for kind in ("drop", "paste"):
        page.evaluate(
            """async (kind) => {
              const canvas = document.createElement("canvas"); canvas.width = 80; canvas.height = 40;
              const blob = await new Promise((r) => canvas.toBlob(r, "image/png"));
              const transfer = new DataTransfer();
              transfer.items.add(new File([blob], kind + ".png", { type: "image/png" }));
              const zone = document.querySelector("[data-image-drop=image]");
              if (kind === "drop") zone.dispatchEvent(new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }));
              else document.dispatchEvent(new ClipboardEvent("paste", { clipboardData: transfer, bubbles: true, cancelable: true }));
            }""",
            kind,
        )
        expect(page.locator("[data-image-drop=image] [data-image-preview] img")).to_have_attribute(
            "src", re.compile("^blob:")
        )
        # The preview of the drop is already there when the paste is handled: wait for the file itself.
        page.wait_for_function(
            "name => document.querySelector('input[name=image]').files[0]?.name === name", arg=f"{kind}.png"
        )
    assert page.csp_violations == []


def test_the_smaller_things(site, worker, two_versions, new_page):
    # A visitor without an account: what Lightbox is, and what others made.
    owner = get_user_model().objects.create_user("pia", "pia@example.com", PASSWORD)
    shown = comparisons.start(two_versions, {"prompt": "a heron in the reeds"}, owner=owner)
    for prediction in shown.predictions.all():
        assert wait_for_status(prediction.id).status == "succeeded"
    shown.set_visibility("public")
    visitor = new_page(viewport=PHONE)
    visitor.goto(site.url + "/")
    expect(visitor.get_by_role("heading", level=1)).to_have_text("Lightbox")
    expect(visitor.get_by_text("Write a prompt once and run it on several image models")).to_be_visible()
    expect(visitor.get_by_role("link", name="a heron in the reeds", exact=True)).to_be_visible()
    expect(visitor.locator(".recent-comparison img")).to_have_count(2)
    expect(visitor.get_by_label("Prompt", exact=True)).to_have_count(0)

    # Sign up: a weak password is told under the password.
    page = new_page()
    page.goto(site.url + "/account/signup")
    page.get_by_label("Username").fill("quinn")
    page.get_by_label("Email").fill("quinn@example.com")
    page.get_by_label("Password", exact=True).fill("abc")
    page.get_by_label("Password confirmation").fill("abc")
    page.get_by_role("button", name="Create account").click()
    expect(page.locator("#id_password1_error")).to_contain_text("This password is too short.")
    expect(page.locator("#id_password1_error")).to_contain_text("This password is too common.")
    expect(page.locator("#id_password2_error")).to_have_count(0)
    sign_up(page, site.url, "quinn")

    # Aspect-ratio presets, and Ctrl+Enter runs.
    page.get_by_role("button", name="Landscape 3:2").click()
    expect(page.get_by_label("Width")).to_have_value("64")
    expect(page.get_by_label("Height")).to_have_value("40")
    page.get_by_role("button", name="Portrait 2:3").click()
    expect(page.get_by_label("Width")).to_have_value("40")
    expect(page.get_by_label("Height")).to_have_value("64")
    page.get_by_label("Prompt", exact=True).fill("a quick sketch of a kettle")
    page.get_by_label("Prompt", exact=True).press("Control+Enter")
    page.wait_for_url(re.compile(r"/c/[a-z0-9]+$"))
    expect(page.locator("article.card [data-status]")).to_have_text(["Succeeded", "Succeeded"], timeout=30_000)
    # Every value the user gave ran as given, so nothing is listed as adjusted.
    expect(page.get_by_role("region", name="Not every model took every value")).to_have_count(0)
    expect(page.locator("details.defaults summary").first).to_have_text(
        re.compile(r"^Model defaults for \d+ fields? left empty$")
    )

    # My history, from the navigation: several at once.
    page.get_by_role("link", name="My history").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("My history")
    page.get_by_label("a quick sketch of a kettle").check()
    page.get_by_label("With the ticked ones").select_option("public")
    page.get_by_role("button", name="Apply").click()
    expect(page.get_by_role("status")).to_contain_text("1 comparison now public.")
    assert Comparison.objects.get(owner__username="quinn").visibility == "public"
    page.get_by_label("a quick sketch of a kettle").check()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete ticked").click()
    expect(page.get_by_role("status")).to_contain_text("1 comparison deleted.")
    assert not Comparison.objects.filter(owner__username="quinn").exists()
    assert page.csp_violations == [] and visitor.csp_violations == []


def test_screens_of_the_changed_pages(site, worker, two_versions, new_page):
    """Every page this work changed, at desktop and phone widths in light and
    dark: screenshots to look at, and axe-core's check."""
    sd = two_versions[0]
    _offline(sd)
    turbo = _variant(sd, "local", "tiny-turbo", sd.location, _turbo)
    owner = get_user_model().objects.create_user("rosa", "rosa@example.com", PASSWORD)
    image = Image.new("RGB", (96, 64), (200, 120, 40))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    from app.core import uploads

    uri = uploads.clean_image(buffer.getvalue()).data_uri
    done = comparisons.start(
        [sd, turbo], {"prompt": "an orange lantern on a quay", "num_inference_steps": 8, "image": uri}, owner=owner
    )
    for prediction in done.predictions.all():
        assert wait_for_status(prediction.id).status == "succeeded"
    done.set_visibility("public")
    prediction = done.predictions.order_by("created_at").first()
    pages = {
        "playground": "/",
        "comparison": f"/c/{done.id}",
        "prediction": f"/p/{prediction.id}",
        "history": "/account/history",
        "help": "/help/running-models",
    }
    problems = {}
    for layout, viewport, scheme in LAYOUTS:
        visitor = new_page(viewport=viewport, color_scheme=scheme)
        visitor.goto(site.url + "/")
        shot(visitor, f"landing-{layout}")
        problems[f"landing-{layout}"] = axe_violations(visitor)
        page = new_page(viewport=viewport, color_scheme=scheme)
        log_in(page, site.url, "rosa")
        for name, path in pages.items():
            page.goto(site.url + path)
            page.wait_for_load_state("networkidle")
            if name == "playground":
                page.get_by_text("1 offline model").click()
            shot(page, f"{name}-{layout}")
            problems[f"{name}-{layout}"] = axe_violations(page)
            if viewport == PHONE:
                width = page.evaluate("document.documentElement.scrollWidth")
                assert width <= viewport["width"], f"{name} is {width}px wide on a phone"
        assert page.csp_violations == []
    assert {name: found for name, found in problems.items() if found} == {}


def test_what_is_typed_while_other_models_load_their_fields_is_kept(site, worker, two_versions, new_page):
    """Choosing models swaps the fields for ones the server fills with what was
    sent; typing meanwhile (a slow server) is not lost, nor an opened section."""
    page = new_page()
    sign_up(page, site.url, "rhea")
    held = []

    def hold_the_fields(route):
        if not held and route.request.method == "GET" and route.request.headers.get("hx-request"):
            held.append(route)
        else:
            route.continue_()

    page.route("**/*", hold_the_fields)
    page.get_by_role("checkbox", name=re.compile(r"^local\/tiny-sdxl ")).uncheck()
    for _ in range(100):
        if held:
            break
        page.wait_for_timeout(50)
    assert held, "the fields' request was not sent"
    page.get_by_label("Prompt", exact=True).fill("typed while the fields were on their way")
    page.get_by_text("Make a grid").click()
    page.get_by_label("X axis", exact=True).select_option("field:num_inference_steps")
    page.evaluate(
        "() => { window.swapped = false;"
        " document.addEventListener('htmx:afterSettle', () => { window.swapped = true; }, {once: true}); }"
    )
    held[0].continue_()
    page.wait_for_function("() => window.swapped")

    expect(page.get_by_role("checkbox", name=re.compile(r"^local\/tiny-sdxl "))).not_to_be_checked()
    expect(page.get_by_label("Prompt", exact=True)).to_have_value("typed while the fields were on their way")
    expect(page.get_by_label("X axis", exact=True)).to_have_value("field:num_inference_steps")
