"""Issue 17's journeys through moderation, the gallery, the live comparison
page and downloads, in a real browser, asserting what a person sees; and the
pages they changed at desktop and phone widths, light and dark (screenshots
and axe-core)."""

import math
import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils import timezone
from PIL import Image
from playwright.sync_api import expect

from app.core.roles import MODERATORS_GROUP
from app.models import Comparison, Prediction
from app.services import comparisons, moderation, storage
from tests.conftest import wait_for_status
from tests.e2e.conftest import DESKTOP, LAYOUTS, PASSWORD, PHONE, axe_violations, log_in, screenshot
from tests.web.conftest import SCHEMA, make_version

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def picture(hue, size=256):
    """A colourful PNG, so previews look like pictures."""
    import io

    image = Image.new("RGB", (size, size))
    image.putdata(
        [
            (
                int(128 + 127 * math.sin(x / 19 + hue)),
                int(128 + 127 * math.sin(y / 23 + hue * 2)),
                int(128 + 127 * math.sin((x + y) / 31 + hue * 3)),
            )
            for y in range(size)
            for x in range(size)
        ]
    )
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def user(name, **extra):
    return get_user_model().objects.create_user(name, f"{name}@example.com", PASSWORD, **extra)


def moderator_user():
    mod = user("mona", is_staff=True)
    mod.groups.add(Group.objects.get_or_create(name=MODERATORS_GROUP)[0])
    return mod


def finished(version, owner, prompt, hue, comparison=None, outputs=1, seed=42):
    now = timezone.now()
    prediction = Prediction.objects.create(
        version=version,
        owner=owner,
        comparison=comparison,
        input={"prompt": prompt, "seed": seed, "num_inference_steps": 4},
        status="succeeded",
        visibility="public",
        source="web",
        logs="Using seed: 42\nstep 1/4\nstep 2/4\nstep 3/4\nstep 4/4\n",
        started_at=now,
        completed_at=now,
        predict_time=1.4,
    )
    for index in range(outputs):
        storage._save_output(prediction, index, picture(hue + index), "image/png")
    return prediction


def shared_comparison(versions, owner, prompt, hue):
    comparison = Comparison.objects.create(owner=owner, input={"prompt": prompt}, seed=42, visibility="public")
    for offset, version in enumerate(versions):
        finished(version, owner, prompt, hue + offset * 2, comparison=comparison)
    return comparison


@pytest.fixture
def catalog_versions(transactional_db):
    import copy

    return [
        make_version("local", "tiny-sd", copy.deepcopy(SCHEMA), "http://127.0.0.1:9/a"),
        make_version("local", "tiny-sdxl", copy.deepcopy(SCHEMA), "http://127.0.0.1:9/b"),
    ]


def test_a_moderator_works_through_the_queue_by_keyboard(site, catalog_versions, new_page):
    base = site.url
    owner, reporter, _ = user("olga"), user("rick"), moderator_user()
    dragon = finished(catalog_versions[0], owner, "a dragon over the harbour at night", 1)
    duel = shared_comparison(catalog_versions, owner, "two knights duelling in the rain", 3)
    moderation.file_report(dragon, "spam", "posted ten times today", reporter=reporter)
    moderation.file_report(duel, "violence", "blood everywhere", reporter=reporter)
    moderation.file_report(duel, "violence", reporter=None)

    page = new_page()
    log_in(page, base, "mona")
    # The header counts what waits for review.
    page.get_by_role("link", name=re.compile(r"^Moderation 2")).click()
    reviews = page.locator("article.review")
    expect(reviews).to_have_count(2)
    expect(reviews.first).to_contain_text("two knights duelling")  # most reported first
    expect(reviews.first).to_contain_text("Violence × 2")
    expect(reviews.first).to_contain_text("“blood everywhere”")
    expect(reviews.first.locator(".review-preview img")).to_have_count(2)  # both models, side by side
    # Prompt search.
    page.get_by_label("Search prompts").fill("dragon")
    page.get_by_role("button", name="Search").click()
    expect(reviews).to_have_count(1)
    expect(reviews.first).to_contain_text("a dragon over the harbour")
    expect(reviews.first).to_be_focused()

    # H on the item: a reason is needed first; Enter in it then hides.
    page.keyboard.press("h")
    reason = reviews.first.get_by_role("combobox", name=re.compile("^Reason"))
    expect(reason).to_be_focused()
    assert Prediction.objects.get(pk=dragon.pk).hidden_at is None
    reason.fill("Spam")
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_contain_text(
        "Hidden: prediction “a dragon over the harbour at night”; its owner was told."
    )
    assert page.url.endswith("/moderation?q=dragon")
    expect(page.get_by_text("Nothing to review matches “dragon”.")).to_be_visible()

    # D deletes images, after a confirmation; without it nothing changes.
    page.goto(base + "/moderation")
    reviews.first.get_by_role("combobox", name=re.compile("^Reason")).fill("Gore")
    page.keyboard.press("Escape")
    page.keyboard.press("d")
    expect(page.get_by_role("heading", name="Delete these images for good?")).to_be_visible()
    assert all(o.rating == "safe" for p in duel.predictions.all() for o in p.outputs.all())
    screenshot(page, "moderation-confirm-desktop")
    assert axe_violations(page) == []
    page.get_by_role("button", name="Delete the images for good").click()
    expect(page.get_by_role("status")).to_contain_text("Its images are deleted: comparison “two knights")
    expect(page.get_by_role("link", name=re.compile(r"^Moderation 0"))).to_be_visible()

    # The owner reads the decision once, in plain words, and dismisses it.
    owner_page = new_page()
    log_in(owner_page, base, "olga")
    notices = owner_page.get_by_role("region", name="Notices from moderators")
    expect(notices).to_contain_text(
        "Moderators hid your prediction “a dragon over the harbour at night”; only you still see it. Their reason: Spam."
    )
    owner_page.goto(f"{base}/p/{dragon.pk}")
    expect(owner_page.get_by_role("status").first).to_contain_text(
        "Hidden by a moderator: Spam. Only you and moderators see it."
    )
    expect(owner_page.get_by_text("Hidden by moderators: Hidden")).to_have_count(0)
    notices.get_by_role("button", name="Dismiss").click()
    expect(owner_page.get_by_role("region", name="Notices from moderators")).to_have_count(0)

    # Visitors learn the review is over.
    visitor = new_page()
    visitor.goto(f"{base}/p/{dragon.pk}")
    expect(visitor.get_by_role("heading", level=1)).to_have_text("Hidden by moderators")
    expect(visitor.get_by_text("Moderators reviewed this prediction and decided to keep it hidden.")).to_be_visible()
    assert page.csp_violations == [] and owner_page.csp_violations == []


def test_a_moderator_on_a_phone_decides_with_the_buttons(site, catalog_versions, new_page):
    base = site.url
    owner, reporter, _ = user("olga"), user("rick"), moderator_user()
    fox = finished(catalog_versions[0], owner, "a fox in a teacup", 5)
    moderation.file_report(fox, "other", "looks fine to me, test", reporter=reporter)

    page = new_page(viewport=PHONE)
    log_in(page, base, "mona")
    page.goto(base + "/moderation")
    review = page.locator("article.review")
    review.get_by_label("Tell the reporters too").check()
    review.get_by_role("button", name=re.compile("^Approve")).click()
    # The browser asks for the reason before anything is sent.
    assert page.url.endswith("/moderation")
    review.get_by_role("combobox", name=re.compile("^Reason")).fill("Within the rules")
    review.get_by_role("button", name=re.compile("^Approve")).click()
    expect(page.get_by_role("status")).to_contain_text("its owner and its reporters were told")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    reporter_page = new_page(viewport=PHONE)
    log_in(reporter_page, base, "rick")
    expect(reporter_page.get_by_role("region", name="Notices from moderators")).to_contain_text(
        "found it within the rules"
    )


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_the_gallery_address_follows_the_filters_and_shows_comparisons(site, catalog_versions, new_page, viewport):
    base = site.url
    owner = user("gina")
    for index in range(30):
        finished(catalog_versions[index % 2], owner, f"a lighthouse number {index}", index)
    finished(catalog_versions[0], owner, "a dragon made of glass", 2)
    finished(catalog_versions[1], owner, "a dragon made of paper", 4)
    duel = shared_comparison(catalog_versions, owner, "a dragon duel at dawn", 6)

    page = new_page(viewport=viewport)
    page.goto(base + "/gallery")
    # Visitors get human filters: models by name, no version hashes, no run states.
    expect(page.get_by_label("Version")).to_have_count(0)
    expect(page.get_by_label("Status")).to_have_count(0)
    page.get_by_label("Search prompts").fill("dragon")
    page.wait_for_url(base + "/gallery?q=dragon")
    expect(page.locator(".tile")).to_have_count(4)  # the comparison's two among them
    page.get_by_label("Model").select_option("local/tiny-sdxl")
    page.wait_for_url(base + "/gallery?q=dragon&model=local%2Ftiny-sdxl")
    expect(page.locator(".tile-prompt")).to_have_text(["a dragon duel at dawn", "a dragon made of paper"])
    # Reload and share show the same.
    page.reload()
    expect(page.get_by_label("Search prompts")).to_have_value("dragon")
    expect(page.locator(".tile")).to_have_count(2)

    # Comparisons as strips, the models side by side.
    page.get_by_text("Comparisons", exact=True).click()
    page.wait_for_url(re.compile(r"show=comparisons"))
    strip = page.locator("a.strip")
    expect(strip).to_have_count(1)
    expect(strip.locator("img")).to_have_count(2)
    expect(strip.locator(".strip-label")).to_have_text(["tiny-sd", "tiny-sdxl"])
    screenshot(page, f"gallery-comparisons-journey-{'phone' if viewport == PHONE else 'desktop'}")
    strip.click()
    page.wait_for_url(f"{base}/c/{duel.id}")
    preview = page.locator('meta[property="og:image"]').get_attribute("content")
    answer = page.request.get(preview)
    assert answer.status == 200 and answer.headers["content-type"] == "image/jpeg"

    # Infinite scroll to the end: no stale "Newer" pager under the tiles.
    page.goto(base + "/gallery")
    page.locator(".grid-more").scroll_into_view_if_needed()
    expect(page.locator(".tile")).to_have_count(34, timeout=20_000)
    expect(page.locator("#pager")).not_to_contain_text("Newer")
    expect(page.locator("#pager")).not_to_contain_text("Newest")
    assert page.csp_violations == []


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_a_download_is_named_after_the_model_prompt_and_seed(site, catalog_versions, new_page, viewport):
    """The page's link and the API's file URL name the file alike. (The test
    server serves /media/ itself, as Django's live server does, without the
    view that names the file; the signed URL goes through it, as every media
    URL does in production.)"""
    from app.models import ApiToken

    owner = user("hugo")
    prediction = finished(catalog_versions[0], owner, "A Red Fox, in fresh snow!", 1, seed=1234)
    name = "tiny-sd_a-red-fox-in-fresh-snow_seed-1234.png"
    page = new_page(viewport=viewport)
    page.goto(f"{site.url}/p/{prediction.id}")
    expect(page.get_by_role("link", name="Download PNG")).to_have_attribute("download", name)

    token = ApiToken.issue(owner)[1]
    api = page.request.get(
        f"{site.url}/v1/predictions/{prediction.id}", headers={"Authorization": f"Bearer {token}"}
    ).json()
    with page.expect_download() as download:
        page.evaluate(
            "url => { const a = document.createElement('a'); a.href = url; a.download = ''; document.body.append(a); a.click(); }",
            api["output"][0],
        )
    assert download.value.suggested_filename == name


def test_the_live_comparison_page_follows_the_run(site, worker, two_versions, new_page):
    base = site.url
    owner = user("lena")
    version = two_versions[0]
    page = new_page()
    log_in(page, base, "lena")
    slow = comparisons.start(
        [version],
        {"prompt": "a slow harbour", "num_inference_steps": 40},
        owner=owner,
        extra_input={version.id: {"step_delay": 0.3}},
    )
    behind = comparisons.start([version], {"prompt": "a queued harbour", "num_inference_steps": 2}, owner=owner)

    # The second waits for the same model server, and says so.
    page.goto(f"{base}/c/{behind.id}")
    card = page.locator("article.card")
    expect(card).to_contain_text("In the queue: 1 prediction ahead of it", timeout=15_000)
    screenshot(page, "comparison-queued-desktop")

    page.goto(f"{base}/c/{slow.id}")
    card = page.locator("article.card")
    expect(card.locator("[data-phase]")).to_contain_text(re.compile(r"Step \d+ of 40"), timeout=20_000)
    first = card.locator("progress").get_attribute("value")
    elapsed = card.locator("[data-elapsed]").inner_text()
    expect(card.locator("progress")).not_to_have_attribute("value", first, timeout=10_000)
    expect(card.locator("[data-elapsed]")).not_to_have_text(elapsed, timeout=10_000)
    expect(page.get_by_role("button", name="Cancel all")).to_be_visible()
    card.get_by_role("button", name="Cancel").click()
    expect(card.locator("[data-status]")).to_have_text("Canceled")
    # The header follows: nothing runs, so nothing to cancel all of.
    expect(page.get_by_role("button", name="Cancel all")).to_have_count(0)
    assert wait_for_status(behind.predictions.get().id).status == "succeeded"
    assert page.csp_violations == []


def test_the_changed_pages_at_desktop_and_phone_widths_light_and_dark(site, catalog_versions, new_page):
    """Screenshots to look at, and axe-core's check, of every page issue 17's
    items 5, 6, 7 and 9 changed."""
    base = site.url
    owner, reporter, _ = user("olga"), user("rick"), moderator_user()
    dragon = finished(catalog_versions[0], owner, "a dragon over the harbour at night, oil painting", 1, outputs=2)
    duel = shared_comparison(catalog_versions, owner, "two knights duelling in the rain, cinematic", 3)
    for index in range(5):
        finished(catalog_versions[index % 2], owner, f"a lighthouse on a cliff, study {index}", index)
    shared_comparison(catalog_versions, owner, "a bowl of ramen, studio light", 8)
    moderation.file_report(dragon, "spam", "posted ten times today", reporter=reporter)
    moderation.file_report(duel, "violence", "blood everywhere", reporter=reporter)
    moderation.file_report(duel, "sexual", reporter=None)
    hidden = finished(catalog_versions[1], owner, "a hidden thing", 9)
    moderation.hide(hidden, get_user_model().objects.get(username="mona"), "Spam")
    running = Comparison.objects.create(owner=owner, input={"prompt": "a slow watercolour"}, seed=7)
    Prediction.objects.create(
        version=catalog_versions[0],
        owner=owner,
        comparison=running,
        input={"prompt": "a slow watercolour", "seed": 7, "num_inference_steps": 4},
        status="processing",
        started_at=timezone.now(),
        logs="Using seed: 7\nstep 2/4\n",
    )
    pages = {
        "moderation": ("mona", "/moderation"),
        # Names apart from test_pages_look's, whose screenshots share the folder.
        "gallery-images": (None, "/gallery"),
        "gallery-comparisons": (None, "/gallery?show=comparisons"),
        "gallery-mine": ("olga", "/gallery?mine=1&status=any"),
        "comparison-shared": (None, f"/c/{duel.id}"),
        "comparison-live": ("olga", f"/c/{running.id}"),
        "prediction-notice": ("olga", f"/p/{hidden.id}"),
        "gone": (None, f"/p/{hidden.id}"),
    }
    problems = {}
    for layout, viewport, scheme in LAYOUTS:
        sessions = {}
        for name, (who, path) in pages.items():
            if who not in sessions:
                sessions[who] = new_page(viewport=viewport, color_scheme=scheme)
                if who:
                    log_in(sessions[who], base, who)
            page = sessions[who]
            page.goto(base + path)
            if name == "comparison-live":
                expect(page.locator("[data-phase]")).to_contain_text("Step 2 of 4")
            else:
                page.wait_for_load_state("networkidle")
            screenshot(page, f"{name}-{layout}")
            problems[f"{name}-{layout}"] = axe_violations(page)
            if viewport == PHONE:
                width = page.evaluate("document.documentElement.scrollWidth")
                assert width <= viewport["width"], f"{name} is {width}px wide on a phone"
        for page in sessions.values():
            assert page.csp_violations == []
    assert {page: found for page, found in problems.items() if found} == {}
