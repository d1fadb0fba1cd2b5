"""Issue 15 in a real browser: voting in the arena with the keyboard on a
desktop and a phone, the reveal, the leaderboard light and dark; axe-core
finds nothing serious; screenshots for people to look at."""

import io
import math
import shutil
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from PIL import Image
from playwright.sync_api import expect

from app.models import ArenaVote
from app.services import arena, storage
from tests.arena.conftest import make_version, new_comparison
from tests.e2e.conftest import DESKTOP, PASSWORD, PHONE, SCREENSHOTS, axe_violations, log_in, screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SHOTS = Path("/tmp/shots-arena")
PROMPTS = ["a lighthouse on a cliff at dusk", "a red fox in fresh snow", "a bowl of ramen, studio light"]


def picture(hue, size=320):
    image = Image.new("RGB", (size, size))
    image.putdata(
        [
            (
                int(128 + 127 * math.sin(x / 17 + hue)),
                int(128 + 127 * math.sin(y / 29 + hue * 2)),
                int(128 + 127 * math.sin((x + y) / 37 + hue * 3)),
            )
            for y in range(size)
            for x in range(size)
        ]
    )
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def published():
    versions = [make_version(name) for name in ("sdxl-lightning", "flux-schnell", "sd-turbo")]
    for n, prompt in enumerate(PROMPTS):
        comparison = new_comparison(versions, prompt=prompt)
        for m, prediction in enumerate(comparison.predictions.all()):
            output = prediction.outputs.get()
            output.delete()
            storage._save_output(prediction, 0, picture(n + m * 2.1), "image/png", "safe")
    get_user_model().objects.create_user("vera", "vera@example.com", PASSWORD)
    return versions


def keep(page, name):
    screenshot(page, name)
    SHOTS.mkdir(exist_ok=True)
    shutil.copy(SCREENSHOTS / f"{name}.png", SHOTS / f"{name}.png")


@pytest.mark.parametrize("layout, viewport, scheme", [("desktop", DESKTOP, "light"), ("phone", PHONE, "dark")])
def test_voting_with_the_keyboard(site, new_page, published, layout, viewport, scheme):
    page = new_page(viewport=viewport, color_scheme=scheme)
    log_in(page, site.url, "vera")
    page.goto(site.url + "/arena")
    expect(page.get_by_role("heading", name="Arena")).to_be_visible()
    expect(page.get_by_role("img", name="Left image")).to_be_visible()
    # Blind: no model's name before the vote.
    for version in published:
        expect(page.locator("main")).not_to_contain_text(version.model.name)
    assert axe_violations(page) == []
    keep(page, f"arena-{layout}-{scheme}")
    page.keyboard.press("1")
    expect(page.get_by_role("heading", name="You voted: left is better")).to_be_visible()
    shown = page.locator(".arena-versions").inner_text()
    assert sum(version.model.name in shown for version in published) == 2
    assert "voted=" in page.url  # htmx pushed the reveal's address
    assert axe_violations(page) == []
    keep(page, f"arena-reveal-{layout}-{scheme}")
    page.keyboard.press("n")
    expect(page.get_by_role("img", name="Right image")).to_be_visible()
    page.keyboard.press("2")
    expect(page.get_by_role("heading", name="You voted: right is better")).to_be_visible()
    page.keyboard.press("n")
    expect(page.get_by_role("button", name="Both bad")).to_be_visible()
    page.keyboard.press("4")
    expect(page.get_by_role("heading", name="You voted: both bad")).to_be_visible()
    votes = ArenaVote.objects.order_by("created_at")
    assert [vote.choice for vote in votes] == ["left", "right", "bad"]
    assert len({(vote.output_a_id, vote.output_b_id) for vote in votes}) == 3


def test_voting_without_javascript(site, browser, published):
    context = browser.new_context(java_script_enabled=False, viewport=DESKTOP)
    page = context.new_page()
    log_in(page, site.url, "vera")
    page.goto(site.url + "/arena")
    page.get_by_role("button", name="Tie").click()
    expect(page.get_by_role("heading", name="You voted: a tie")).to_be_visible()
    page.get_by_role("link", name="Next pair").click()
    expect(page.get_by_role("img", name="Left image")).to_be_visible()
    context.close()
    assert ArenaVote.objects.get().outcome == "tie"


@pytest.mark.parametrize("layout, viewport, scheme", [("desktop", DESKTOP, "dark"), ("phone", PHONE, "light")])
def test_the_leaderboard_reads_in_both_schemes(site, new_page, published, layout, viewport, scheme):
    page = new_page(viewport=viewport, color_scheme=scheme)
    log_in(page, site.url, "vera")
    for choice in ("1", "1", "2", "3", "1", "4"):
        page.goto(site.url + "/arena")
        if page.get_by_text("No pair of images is left").count():
            break
        page.keyboard.press(choice)
        expect(page.get_by_role("heading", name="You voted")).to_be_visible()
    arena.recompute("")
    page.goto(site.url + "/leaderboard")
    expect(page.get_by_role("table")).to_be_visible()
    expect(page.get_by_text("bootstrap resamples")).to_be_visible()
    expect(page.locator("svg[role=img]")).to_have_count(2)
    assert axe_violations(page) == []
    keep(page, f"leaderboard-{layout}-{scheme}")


def test_moderators_exclude_a_constant_voter_in_one_action(site, new_page, published, settings):
    from django.contrib.auth.models import Group

    from app.core.roles import MODERATORS_GROUP
    from app.models import Comparison
    from tests.arena.conftest import add_votes, first_output

    settings.ARENA_FLAG_MIN_VOTES = 3
    mod = get_user_model().objects.create_user("mona", "mona@example.com", PASSWORD, is_staff=True)
    mod.groups.add(Group.objects.get_or_create(name=MODERATORS_GROUP)[0])
    vera = get_user_model().objects.get(username="vera")
    alpha, beta, _ = published
    add_votes(
        f"u{vera.pk}",
        [(first_output(c, alpha), first_output(c, beta), "a") for c in Comparison.objects.all()],
        user=vera,
    )
    page = new_page(viewport=DESKTOP, color_scheme="dark")
    log_in(page, site.url, "mona")
    page.goto(site.url + "/moderation")
    section = page.locator("#arena-voters")
    expect(section).to_contain_text("vera")
    expect(section).to_contain_text("Constant")
    assert axe_violations(page) == []
    section.scroll_into_view_if_needed()
    keep(page, "moderation-arena-voters-desktop-dark")
    section.get_by_role("button", name="Exclude their votes").click()
    expect(page.get_by_text("3 arena votes of vera excluded from the leaderboards")).to_be_visible()
    assert ArenaVote.objects.filter(excluded=True).count() == 3
