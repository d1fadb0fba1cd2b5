"""The moderation panel in the admin: the review queue, the actions (one item
or many), the audit trail, and that staff outside the moderators group cannot
moderate."""

import pytest
from django.test import Client
from django.urls import reverse

from app.models import Ban, ModerationAction, Prediction, Report
from app.services import moderation, predictions
from app.services.limits import RunRefused
from tests.conftest import make_trusted_reporter

from .conftest import login

pytestmark = pytest.mark.django_db(transaction=True)

QUEUE = reverse("admin:app_predictionreview_changelist")
PREDICTIONS = reverse("admin:app_prediction_changelist")


def _act(client, url, action, items, reason=""):
    return client.post(
        url, {"action": action, "_selected_action": [item.pk for item in items], "reason": reason}, follow=True
    )


def test_the_queue_lists_reported_items_most_reported_and_newest_first(
    make_prediction, alice, bob, carol, dave, moderator
):
    quiet = make_prediction(owner=alice)
    once = make_prediction(owner=alice)
    twice = make_prediction(owner=alice)
    once_later = make_prediction(owner=alice)
    moderation.file_report(twice, "spam", reporter=bob)
    moderation.file_report(twice, "spam", reporter=carol)
    moderation.file_report(once, "other", reporter=dave)
    moderation.file_report(once_later, "violence", "a fight", reporter=None)

    response = login(Client(), moderator).get(QUEUE)

    assert response.status_code == 200
    shown = [row.pk for row in response.context["cl"].result_list]
    assert shown == [twice.pk, once_later.pk, once.pk]
    assert b"Review queue: reported predictions, most reported first" in response.content
    assert quiet.pk not in shown
    thumbnail = twice.outputs.get().thumbnail.url
    assert f'src="{thumbnail}"'.encode() in response.content
    assert b"Violence: a fight" in response.content


def test_reports_say_whether_the_reporter_counts_toward_hiding(make_prediction, version, alice, bob, carol, moderator):
    prediction = make_prediction(owner=alice)
    moderation.file_report(prediction, "spam", reporter=make_trusted_reporter(bob, version))
    moderation.file_report(prediction, "spam", reporter=carol)  # a new account
    moderation.file_report(prediction, "spam", reporter=None)
    client = login(Client(), moderator)

    listed = client.get(reverse("admin:app_report_changelist"))
    inline = client.get(reverse("admin:app_prediction_change", args=[prediction.pk]))

    rows = {str(row.reporter): row.reporter_trusted for row in listed.context["cl"].result_list}
    assert rows == {"bob": True, "carol": False, "None": False}
    assert b"Trusted reporter" in listed.content and b"Trusted reporter" in inline.content
    assert inline.content.count(b'alt="True"') == 1 and inline.content.count(b'alt="False"') == 2


def test_approve_dismisses_the_reports_and_shows_the_item_again(make_prediction, alice, bob, moderator):
    prediction = make_prediction(owner=alice)
    moderation.file_report(prediction, "spam", reporter=bob)
    prediction.hide("Hidden while moderators review reports (spam).")

    response = _act(login(Client(), moderator), QUEUE, "approve", [prediction], "not spam")

    assert response.status_code == 200
    prediction.refresh_from_db()
    assert not prediction.is_hidden
    assert Report.objects.get().state == "dismissed" and Report.objects.get().resolved_by == moderator
    entry = ModerationAction.objects.get(kind="approve")
    assert (entry.moderator, entry.prediction, entry.reason, entry.user) == (moderator, prediction, "not spam", alice)
    assert login(Client(), moderator).get(QUEUE).context["cl"].result_count == 0


def test_hide_in_bulk_needs_a_reason_and_is_audited(make_prediction, alice, bob, moderator):
    items = [make_prediction(owner=alice), make_prediction(owner=bob, visibility="unlisted")]
    client = login(Client(), moderator)

    _act(client, PREDICTIONS, "hide", items, reason="")
    assert not Prediction.objects.hidden().exists()

    _act(client, PREDICTIONS, "hide", items, reason="gore")
    assert Prediction.objects.hidden().count() == 2
    assert all(p.hidden_reason == "Hidden by a moderator: gore." for p in Prediction.objects.all())
    assert ModerationAction.objects.filter(kind="hide", moderator=moderator, reason="gore").count() == 2
    assert not Prediction.objects.public().exists()


def test_mark_nsfw_rates_outputs_and_makes_blurred_thumbnails(make_prediction, alice, moderator):
    prediction = make_prediction(owner=alice, ratings=("safe", "safe"))

    _act(login(Client(), moderator), PREDICTIONS, "mark_nsfw", [prediction])

    outputs = list(prediction.outputs.all())
    assert [o.rating for o in outputs] == ["nsfw", "nsfw"]
    assert all(o.blurred_thumbnail for o in outputs)
    assert ModerationAction.objects.get().kind == "mark_nsfw"


def test_delete_outputs_removes_the_files_for_good(make_prediction, alice, moderator):
    from django.core.files.storage import default_storage

    prediction = make_prediction(owner=alice)
    name = prediction.outputs.get().file.name
    client = login(Client(), moderator)

    # It asks first: nothing is deleted until the moderator confirms.
    asked = _act(client, PREDICTIONS, "delete_outputs", [prediction], "illegal")
    assert b"Delete these images for good?" in asked.content
    assert prediction.outputs.get().rating == "safe" and default_storage.exists(name)
    client.post(
        PREDICTIONS,
        {"action": "delete_outputs", "_selected_action": [prediction.pk], "reason": "illegal", "confirmed": "yes"},
    )

    output = prediction.outputs.get()
    assert output.rating == "blocked" and not output.file
    assert not default_storage.exists(name)
    prediction.refresh_from_db()
    assert prediction.is_hidden
    from app.services import api_json as api

    payload = api.prediction_json(prediction)
    assert payload["output"] == [] and payload["data_removed"] is True


def test_ban_refuses_runs_and_hides_the_users_items(make_prediction, version, alice, moderator):
    shared = make_prediction(owner=alice, visibility="public")
    private = make_prediction(owner=alice, visibility="private")

    _act(login(Client(), moderator), PREDICTIONS, "ban_owner", [shared], "spam bot")

    assert Ban.objects.get(user=alice).reason == "spam bot"
    shared.refresh_from_db()
    private.refresh_from_db()
    assert shared.is_hidden and "suspended" in shared.hidden_reason
    assert not private.is_hidden
    with pytest.raises(RunRefused) as refused:
        predictions.start(version, {"prompt": "x"}, owner=alice)
    assert refused.value.status == 403 and "spam bot" in refused.value.detail
    assert ModerationAction.objects.get(kind="ban").user == alice

    ban_list = reverse("admin:app_ban_changelist")
    _act(login(Client(), moderator), ban_list, "lift", [Ban.objects.get()], "appealed")
    shared.refresh_from_db()
    assert not shared.is_hidden and not Ban.objects.exists()
    assert ModerationAction.objects.filter(kind="unban").exists()


def test_filters_by_model_user_and_state(make_prediction, alice, bob, moderator):
    hidden = make_prediction(owner=alice)
    hidden.hide("x")
    make_prediction(owner=bob)
    client = login(Client(), moderator)

    by_state = client.get(PREDICTIONS, {"state": "hidden"}).context["cl"].result_list
    by_user = client.get(PREDICTIONS, {"owner__id__exact": bob.pk}).context["cl"].result_list
    by_model = client.get(PREDICTIONS, {"version__model__id__exact": hidden.version.model_id}).context["cl"]

    assert [p.pk for p in by_state] == [hidden.pk]
    assert [p.owner for p in by_user] == [bob]
    assert by_model.result_count == 2


def test_staff_outside_the_moderators_group_cannot_moderate(make_prediction, alice, bob, staff):
    prediction = make_prediction(owner=alice)
    moderation.file_report(prediction, "spam", reporter=bob)
    client = login(Client(), staff)

    for name in ("predictionreview", "prediction", "report", "moderationaction", "ban", "blockedterm"):
        assert client.get(reverse(f"admin:app_{name}_changelist")).status_code == 403
    response = client.post(PREDICTIONS, {"action": "hide", "_selected_action": [prediction.pk], "reason": "x"})
    assert response.status_code == 403
    prediction.refresh_from_db()
    assert not prediction.is_hidden and not ModerationAction.objects.exists()
    assert b"Review queue" not in client.get(reverse("admin:index")).content


def test_moderators_edit_the_prompt_blocklist(moderator, staff):
    from app.models import BlockedTerm

    add = reverse("admin:app_blockedterm_add")
    assert login(Client(), staff).post(add, {"term": "nope"}).status_code == 403
    response = login(Client(), moderator).post(add, {"term": "forbidden words", "note": "test"})
    assert response.status_code == 302
    assert BlockedTerm.objects.get().term == "forbidden words"


def test_the_comparison_queue_and_hiding_a_comparison_with_its_predictions(make_prediction, alice, bob, moderator):
    from app.models import Comparison

    comparison = Comparison.objects.create(owner=alice, visibility="public")
    predictions = [make_prediction(owner=alice, comparison=comparison) for _ in range(2)]
    moderation.file_report(comparison, "violence", reporter=bob)
    client = login(Client(), moderator)
    queue = reverse("admin:app_comparisonreview_changelist")

    response = client.get(queue)
    assert [c.pk for c in response.context["cl"].result_list] == [comparison.pk]
    assert predictions[0].outputs.get().thumbnail.url.encode() in response.content

    _act(client, queue, "hide", [comparison], "gore")
    assert Comparison.objects.get().is_hidden
    assert all(p.is_hidden for p in Prediction.objects.all())
    assert Report.objects.get().state == "actioned"
    assert ModerationAction.objects.get().comparison == comparison


def test_the_queues_search_prompts_and_show_comparisons_reasons(make_prediction, alice, bob, moderator):
    from app.models import Comparison

    fox = make_prediction(owner=alice)
    Prediction.objects.filter(pk=fox.pk).update(input={"prompt": "a fox at dawn"})
    moderation.file_report(fox, "spam", reporter=bob)
    moderation.file_report(make_prediction(owner=alice), "spam", reporter=bob)
    comparison = Comparison.objects.create(owner=alice, input={"prompt": "two cats"}, visibility="public")
    moderation.file_report(comparison, "violence", "claws out", reporter=bob)
    client = login(Client(), moderator)

    found = client.get(QUEUE, {"q": "fox"})
    comparisons = client.get(reverse("admin:app_comparisonreview_changelist"))

    assert [row.pk for row in found.context["cl"].result_list] == [fox.pk]
    assert b"Violence: claws out" in comparisons.content
