"""The moderation page (/moderation): who gets it, the queue of reported
predictions and comparisons, decisions with a required reason, the
confirmation before images are deleted, the owner's and reporters' notices,
the header's count, and what visitors then get (410 pending or decided; a
hidden prediction gone from its public comparison, link preview included)."""

import io
import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from PIL import Image

from app.models import Comparison, ModerationAction, Notice, Prediction, Report
from app.services import moderation
from tests.conftest import make_trusted_reporter

from .conftest import login

pytestmark = pytest.mark.django_db(transaction=True)


def _columns(image):
    """How many pictures a side-by-side preview holds: runs of non-background
    columns along a line across its middle."""
    row = [image.getpixel((x, image.height // 3)) for x in range(image.width)]
    filled = [abs(pixel[0] - 17) + abs(pixel[1] - 17) + abs(pixel[2] - 21) > 30 for pixel in row]
    return sum(1 for x in range(1, len(filled)) if filled[x] and not filled[x - 1]) + int(filled[0])


def _comparison(make_prediction, owner, prompt="two foxes compared"):
    comparison = Comparison.objects.create(owner=owner, input={"prompt": prompt}, seed=1, visibility="public")
    first = make_prediction(owner=owner, comparison=comparison)
    second = make_prediction(owner=owner, comparison=comparison)
    Prediction.objects.filter(comparison=comparison).update(input={"prompt": prompt, "seed": 1})
    return comparison, first, second


def test_only_moderators_get_the_page(alice, staff, moderator):
    assert Client().get("/moderation")["Location"].startswith("/account/login/?next=/moderation")
    assert login(Client(), alice).get("/moderation").status_code == 404
    assert login(Client(), staff).get("/moderation").status_code == 404
    assert login(Client(), alice).post("/moderation/prediction/x", {"decision": "hide"}).status_code == 404
    assert login(Client(), moderator).get("/moderation").status_code == 200


def test_the_queue_shows_predictions_and_comparisons_with_reasons_and_reporters(
    make_prediction, version, alice, bob, carol, dave, moderator
):
    once = make_prediction(owner=alice)
    comparison, _, _ = _comparison(make_prediction, alice)
    moderation.file_report(once, "spam", "buy my stuff", reporter=bob)
    moderation.file_report(comparison, "violence", "a fight", reporter=make_trusted_reporter(carol, version))
    moderation.file_report(comparison, "violence", reporter=dave)
    moderation.file_report(comparison, "sexual", reporter=None)

    page = login(Client(), moderator).get("/moderation").content.decode()

    # Most reported first: the comparison (3 reports), then the prediction.
    assert page.index("two foxes compared") < page.index("a red square")
    assert "3 open reports from 2 accounts (1 trusted) and 1 anonymous visitor" in page
    assert "<strong>Violence</strong> × 2" in page and "<strong>Sexual content</strong> × 1" in page
    assert "“a fight”" in page and "“buy my stuff”" in page
    # Large previews: the 384 px thumbnails, one per model of the comparison, every image of the prediction.
    assert page.count('class="review-preview"') == 3
    assert once.outputs.get().thumbnail.url in page
    # The header counts the items waiting.
    assert re.search(r'Moderation <span class="count count-due">2</span><span class="visually-hidden"> to review', page)


def test_search_finds_prompt_text(make_prediction, alice, bob, moderator):
    fox = make_prediction(owner=alice)
    Prediction.objects.filter(pk=fox.pk).update(input={"prompt": "a fox in the snow"})
    other = make_prediction(owner=alice)
    comparison, _, _ = _comparison(make_prediction, alice, prompt="a snowy fox duel")
    for item in (fox, other, comparison):
        moderation.file_report(item, "spam", reporter=bob)

    page = login(Client(), moderator).get("/moderation", {"q": "fox"}).content.decode()

    assert "a fox in the snow" in page and "a snowy fox duel" in page
    assert "a red square" not in page


def test_a_decision_without_a_reason_is_refused_and_changes_nothing(make_prediction, alice, bob, moderator):
    prediction = make_prediction(owner=alice)
    moderation.file_report(prediction, "spam", reporter=bob)

    response = login(Client(), moderator).post(
        f"/moderation/prediction/{prediction.pk}", {"decision": "hide", "reason": "   "}
    )

    assert response.status_code == 400
    assert "Give a reason: the owner reads it" in response.content.decode()
    assert 'aria-invalid="true"' in response.content.decode()
    prediction.refresh_from_db()
    assert not prediction.is_hidden and Report.objects.get().state == "open"
    assert not ModerationAction.objects.exists() and not Notice.objects.exists()


def test_hide_tells_the_owner_once_in_plain_words_and_the_reporters_if_asked(make_prediction, alice, bob, moderator):
    prediction = make_prediction(owner=alice)
    moderation.file_report(prediction, "spam", reporter=bob)

    response = login(Client(), moderator).post(
        f"/moderation/prediction/{prediction.pk}",
        {"decision": "hide", "reason": "Spam", "tell_reporters": "on"},
        follow=True,
    )

    assert "Hidden: prediction “a red square”; its owner and its reporters were told." in response.content.decode()
    prediction.refresh_from_db()
    assert prediction.hidden_reason == "Hidden by a moderator: Spam."
    assert Report.objects.get().state == "actioned"
    assert ModerationAction.objects.get().kind == "hide"
    owner = login(Client(), alice).get(f"/p/{prediction.pk}").content.decode()
    assert "Hidden by a moderator: Spam. Only you and moderators see it." in owner
    assert "Hidden by moderators: Hidden" not in owner
    assert "Moderators hid your prediction “a red square”; only you still see it. Their reason: Spam." in owner
    reporter = login(Client(), bob).get("/gallery").content.decode()
    assert "Moderators reviewed the prediction “a red square” you reported and hid it." in reporter
    # Dismissed, the notice leaves the pages.
    login(Client(), alice).post("/account/notices/dismiss", {"next": "/gallery"})
    assert "Moderators hid your" not in login(Client(), alice).get("/gallery").content.decode()


def test_approve_shows_it_again_and_reporters_are_told_only_if_asked(make_prediction, alice, bob, moderator):
    prediction = make_prediction(owner=alice)
    moderation.file_report(prediction, "spam", reporter=bob)
    prediction.hide("Hidden while moderators review reports (spam).")

    login(Client(), moderator).post(
        f"/moderation/prediction/{prediction.pk}", {"decision": "approve", "reason": "Within the rules"}
    )

    prediction.refresh_from_db()
    assert not prediction.is_hidden and Report.objects.get().state == "dismissed"
    assert [n.text for n in Notice.objects.filter(user=alice)] == [
        "Moderators reviewed your prediction “a red square” and show it again. Their reason: Within the rules."
    ]
    assert not Notice.objects.filter(user=bob).exists()


def test_mark_nsfw_blurs_the_comparisons_images(make_prediction, alice, bob, moderator):
    comparison, first, second = _comparison(make_prediction, alice)
    moderation.file_report(comparison, "sexual", reporter=bob)

    login(Client(), moderator).post(f"/moderation/comparison/{comparison.pk}", {"decision": "nsfw", "reason": "nudity"})

    assert {o.rating for p in (first, second) for o in p.outputs.all()} == {"nsfw"}
    assert Client().get(f"/c/{comparison.pk}").content.decode().count("Blurred: rated NSFW") == 2


def test_deleting_images_asks_first(make_prediction, alice, bob, moderator):
    prediction = make_prediction(owner=alice)
    moderation.file_report(prediction, "illegal", reporter=bob)
    client = login(Client(), moderator)
    url = f"/moderation/prediction/{prediction.pk}"

    asked = client.post(url, {"decision": "delete", "reason": "illegal"})

    assert asked.status_code == 200
    assert "Delete these images for good?" in asked.content.decode()
    output = prediction.outputs.get()
    assert output.rating == "safe" and output.file.storage.exists(output.file.name)
    assert Report.objects.get().state == "open"

    client.post(url, {"decision": "delete", "reason": "illegal", "confirmed": "yes"})

    output.refresh_from_db()
    assert output.rating == "blocked" and not output.file
    assert ModerationAction.objects.get().kind == "delete_outputs"


def test_the_header_count_is_for_staff_who_moderate(make_prediction, alice, bob, staff, moderator):
    moderation.file_report(make_prediction(owner=alice), "spam", reporter=bob)
    assert "to review" in login(Client(), moderator).get("/gallery").content.decode()
    assert "to review" not in login(Client(), staff).get("/gallery").content.decode()
    assert "to review" not in login(Client(), bob).get("/gallery").content.decode()


def test_the_gone_page_says_whether_review_is_pending_or_decided(make_prediction, version, alice, moderator):
    prediction = make_prediction(owner=alice)
    reporters = [
        make_trusted_reporter(get_user_model().objects.create_user(f"r{i}", f"r{i}@example.com", "pw"), version)
        for i in range(3)
    ]
    for reporter in reporters:
        moderation.file_report(prediction, "violence", reporter=reporter)

    pending = Client().get(f"/p/{prediction.pk}")
    assert pending.status_code == 410
    assert "hidden while moderators review the reports" in pending.content.decode()

    moderation.hide(prediction, moderator, "gore")

    decided = Client().get(f"/p/{prediction.pk}")
    assert decided.status_code == 410
    assert "Moderators reviewed this prediction and decided to keep it hidden." in decided.content.decode()


def test_a_hidden_prediction_leaves_its_public_comparison_and_its_link_preview(make_prediction, alice, bob, moderator):
    comparison, first, second = _comparison(make_prediction, alice)
    moderation.file_report(first, "violence", reporter=bob)
    before = Client().get(f"/c/{comparison.pk}").content.decode()
    assert first.outputs.get().thumbnail.url in before
    preview_before = re.search(r'<meta property="og:image" content="([^"]+)"', before).group(1)

    login(Client(), moderator).post(f"/moderation/prediction/{first.pk}", {"decision": "hide", "reason": "gore"})

    page = Client().get(f"/c/{comparison.pk}").content.decode()
    for output in first.outputs.all():
        for field in output.stored_files():
            assert field.url not in page
    assert f"/p/{first.pk}" not in page
    # The link preview now shows only the other model, under a new address
    # (chat apps cache previews by address).
    preview = re.search(r'<meta property="og:image" content="([^"]+)"', page).group(1)
    assert preview != preview_before
    image = Image.open(io.BytesIO(Client().get(preview.replace("http://testserver", "")).content))
    assert _columns(image) == 1
