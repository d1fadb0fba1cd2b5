"""Reports: distinct trusted signed-in reporters hide a shared item at the
threshold; anonymous reports and new accounts' only queue; the owner still sees
a hidden item, with why."""

import pytest
from django.contrib.auth.models import AnonymousUser
from django.test import override_settings

from app.models import Comparison, ModerationAction, Prediction, Report
from app.services import moderation
from tests.conftest import make_trusted_reporter

pytestmark = pytest.mark.django_db(transaction=True)


@override_settings(REPORT_THRESHOLD=2)
def test_distinct_signed_in_reporters_hide_a_public_prediction(make_prediction, version, alice, bob, carol):
    prediction = make_prediction(owner=alice)
    for reporter in (bob, carol):
        make_trusted_reporter(reporter, version)

    moderation.file_report(prediction, "sexual", reporter=bob)
    moderation.file_report(prediction, "sexual", "again", reporter=bob)  # the same person twice counts once
    prediction.refresh_from_db()
    assert not prediction.is_hidden
    assert Report.objects.filter(reporter=bob).count() == 1

    moderation.file_report(prediction, "violence", reporter=carol)
    prediction.refresh_from_db()
    assert prediction.is_hidden
    assert "sexual content" in prediction.hidden_reason and "violence" in prediction.hidden_reason
    entry = ModerationAction.objects.get()
    assert entry.kind == "auto_hide" and entry.moderator is None and entry.prediction == prediction


@override_settings(REPORT_THRESHOLD=2)
def test_anonymous_reports_queue_but_never_hide(make_prediction, alice):
    prediction = make_prediction(owner=alice, visibility="unlisted")

    for _ in range(5):
        moderation.file_report(prediction, "spam", reporter=AnonymousUser())

    prediction.refresh_from_db()
    assert not prediction.is_hidden
    assert Report.objects.filter(prediction=prediction, state="open", reporter=None).count() == 5


def _accounts(*names):
    from django.contrib.auth import get_user_model

    return [get_user_model().objects.create_user(name, f"{name}@example.com", "pw") for name in names]


def test_three_new_accounts_cannot_hide_a_public_item(make_prediction, alice):
    prediction = make_prediction(owner=alice)

    for reporter in _accounts("sock1", "sock2", "sock3"):
        moderation.file_report(prediction, "sexual", reporter=reporter)

    prediction.refresh_from_db()
    assert not prediction.is_hidden
    assert Report.objects.filter(prediction=prediction, state="open").count() == 3  # all in the queue
    assert not ModerationAction.objects.exists()


def test_three_trusted_accounts_hide_it(make_prediction, version, alice):
    prediction = make_prediction(owner=alice)

    for reporter in _accounts("ann", "ben", "cat"):
        moderation.file_report(prediction, "sexual", reporter=make_trusted_reporter(reporter, version))

    prediction.refresh_from_db()
    assert prediction.is_hidden


@pytest.mark.parametrize("missing", ["age", "activity", "good standing"])
def test_an_account_that_misses_part_of_the_rule_does_not_count(
    make_prediction, version, alice, moderator, missing, settings
):
    from django.utils import timezone

    from app.models import Ban

    settings.REPORT_THRESHOLD = 1
    prediction = make_prediction(owner=alice)
    (reporter,) = _accounts("almost")
    make_trusted_reporter(reporter, version)
    if missing == "age":
        reporter.date_joined = timezone.now()
        reporter.save(update_fields=["date_joined"])
    elif missing == "activity":
        # Runs that failed or never finished are not activity.
        reporter.predictions.update(status="failed")
    else:
        Ban.objects.create(user=reporter, reason="spam", created_by=moderator)

    moderation.file_report(prediction, "spam", reporter=reporter)

    prediction.refresh_from_db()
    assert not prediction.is_hidden


def test_staff_count_whatever_their_age_and_the_rule_is_configurable(make_prediction, alice, settings):
    settings.REPORT_THRESHOLD = 1
    staff_member, newcomer = _accounts("helper", "newcomer")
    staff_member.is_staff = True
    staff_member.save(update_fields=["is_staff"])
    first, second = make_prediction(owner=alice), make_prediction(owner=alice)

    moderation.file_report(first, "spam", reporter=staff_member)
    settings.REPORTER_MIN_AGE_DAYS, settings.REPORTER_MIN_PREDICTIONS = 0, 0
    moderation.file_report(second, "spam", reporter=newcomer)

    assert Prediction.objects.get(pk=first.pk).is_hidden
    assert Prediction.objects.get(pk=second.pk).is_hidden


@override_settings(REPORT_THRESHOLD=1)
def test_the_owners_own_report_does_not_count(make_prediction, version, alice):
    prediction = make_prediction(owner=alice)
    make_trusted_reporter(alice, version)

    moderation.file_report(prediction, "other", reporter=alice)

    prediction.refresh_from_db()
    assert not prediction.is_hidden


@override_settings(REPORT_THRESHOLD=1)
def test_a_reported_comparison_hides_with_its_predictions(make_prediction, version, alice, bob):
    make_trusted_reporter(bob, version)
    comparison = Comparison.objects.create(owner=alice, visibility="unlisted")
    first = make_prediction(owner=alice, visibility="unlisted", comparison=comparison)
    second = make_prediction(owner=alice, visibility="unlisted", comparison=comparison)

    moderation.file_report(comparison, "illegal", reporter=bob)

    assert Comparison.objects.get().is_hidden
    assert all(p.is_hidden for p in Prediction.objects.filter(pk__in=[first.pk, second.pk]))
    assert Comparison.objects.accessible_to(bob).count() == 0
    assert Comparison.objects.accessible_to(alice).count() == 1


def test_listing_filters_leave_hidden_and_private_items_to_owner_and_moderators(make_prediction, alice, bob, moderator):
    shown = make_prediction(owner=alice, visibility="public")
    hidden = make_prediction(owner=alice, visibility="public")
    hidden.hide("test")
    unlisted = make_prediction(owner=alice, visibility="unlisted")
    private = make_prediction(owner=alice, visibility="private")
    anonymous = AnonymousUser()

    assert set(Prediction.objects.public()) == {shown}
    assert set(Prediction.objects.visible_to(anonymous)) == {shown}
    assert set(Prediction.objects.visible_to(bob)) == {shown}
    assert set(Prediction.objects.visible_to(alice)) == {shown, hidden, unlisted, private}
    assert set(Prediction.objects.visible_to(moderator)) == {shown, hidden}
    assert set(Prediction.objects.accessible_to(anonymous)) == {shown, unlisted}
    assert set(Prediction.objects.accessible_to(bob)) == {shown, unlisted}
    assert set(Prediction.objects.accessible_to(moderator)) == {shown, hidden, unlisted, private}


def test_a_hidden_prediction_answers_410_to_others_and_shows_its_owner_why(
    site, make_prediction, alice, bob, moderator, api
):
    import httpx

    from app.models import ApiToken

    prediction = make_prediction(owner=alice, visibility="unlisted")
    prediction.hide("Hidden by a moderator: gore")
    bob_api = httpx.Client(base_url=site.url, headers={"Authorization": f"Bearer {ApiToken.issue(bob)[1]}"})
    mod_api = httpx.Client(base_url=site.url, headers={"Authorization": f"Bearer {ApiToken.issue(moderator)[1]}"})

    gone = bob_api.get(f"/v1/predictions/{prediction.id}")
    assert gone.status_code == 410
    assert gone.headers["content-type"] == "application/problem+json"
    assert "hidden by moderators" in gone.json()["detail"]

    mine = api.get(f"/v1/predictions/{prediction.id}")
    assert mine.status_code == 200
    assert mine.json()["moderation"] == {"hidden": True, "reason": "Hidden by a moderator: gore"}
    assert [p["id"] for p in api.get("/v1/predictions").json()["results"]] == [prediction.id]

    assert mod_api.get(f"/v1/predictions/{prediction.id}").status_code == 200


def test_a_private_prediction_is_not_found_for_others_even_when_hidden(site, make_prediction, alice, bob):
    import httpx

    from app.models import ApiToken

    prediction = make_prediction(owner=alice, visibility="private")
    bob_api = httpx.Client(base_url=site.url, headers={"Authorization": f"Bearer {ApiToken.issue(bob)[1]}"})
    assert bob_api.get(f"/v1/predictions/{prediction.id}").status_code == 404
    prediction.hide("x")
    assert bob_api.get(f"/v1/predictions/{prediction.id}").status_code == 404
