"""Reporting a prediction or a comparison from its page (/p/<id>/report,
/c/<id>/report): with htmx and without JavaScript, the threshold that hides an
item, anonymous reports and their limit, bad input."""

import secrets

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from app.models import Comparison, ModerationAction, Prediction, Report
from tests.conftest import make_trusted_reporter
from tests.web.conftest import make_prediction

pytestmark = pytest.mark.django_db(transaction=True)

HTMX = {"HX-Request": "true"}


@pytest.fixture(autouse=True)
def _own_network(client):
    """Each test reports from a network of its own, so anonymous reports that
    the cache counted (Redis keeps them between runs) never carry over."""
    client.defaults["REMOTE_ADDR"] = random_address()


def random_address():
    return f"2001:db8:{secrets.token_hex(2)}:{secrets.token_hex(2)}::1"


def user(name):
    return get_user_model().objects.create_user(name, f"{name}@example.com", "correct horse battery")


def test_others_get_a_report_form_and_the_owner_does_not(client, alice, bob, sd_version):
    prediction = make_prediction(sd_version, owner=alice, visibility="unlisted")
    comparison = Comparison.objects.create(owner=alice, input={"prompt": "a fox"})
    make_prediction(sd_version, owner=alice, visibility="unlisted", comparison=comparison)

    for url, kind in [(f"/p/{prediction.id}", "prediction"), (f"/c/{comparison.id}", "comparison")]:
        anonymous = client.get(url).content.decode()
        assert f'Report<span class="visually-hidden"> this {kind}</span></summary>' in anonymous
        assert f'action="{url}/report"' in anonymous and 'name="csrfmiddlewaretoken"' in anonymous
        assert "Sexual content" in anonymous and "Violence" in anonymous and "Illegal content" in anonymous

        client.force_login(bob)
        assert f'action="{url}/report"' in client.get(url).content.decode()

        client.force_login(alice)
        mine = client.get(url).content.decode()
        assert f'action="{url}/report"' not in mine and "Send report" not in mine
        client.logout()


def test_a_report_is_stored_and_thanked_for_in_place(client, alice, bob, sd_version):
    prediction = make_prediction(sd_version, owner=alice)
    client.force_login(bob)

    response = client.post(f"/p/{prediction.id}/report", {"reason": "violence", "text": "  gore  "}, headers=HTMX)

    assert response.status_code == 200
    assert "Thanks, moderators will review it." in response.content.decode()
    assert "<html" not in response.content.decode()  # only the fragment htmx swaps in
    report = Report.objects.get()
    assert (report.prediction, report.reporter, report.reason, report.text, report.state) == (
        prediction,
        bob,
        "violence",
        "gore",
        "open",
    )


def test_without_javascript_it_posts_and_comes_back_with_a_message(client, alice, sd_version):
    comparison = Comparison.objects.create(owner=alice, input={"prompt": "a fox"})

    response = client.post(f"/c/{comparison.id}/report", {"reason": "spam"}, follow=True)

    assert response.redirect_chain == [(f"/c/{comparison.id}", 302)]
    assert "Thanks, moderators will review it." in response.content.decode()
    report = Report.objects.get()
    assert (report.comparison, report.reporter, report.reason) == (comparison, None, "spam")


def test_distinct_signed_in_reporters_hide_it_and_its_owner_sees_why(client, alice, bob, sd_version, settings):
    settings.REPORT_THRESHOLD = 2
    prediction = make_prediction(sd_version, owner=alice, visibility="public")
    url = f"/p/{prediction.id}"
    client.force_login(make_trusted_reporter(bob, sd_version))

    client.post(f"{url}/report", {"reason": "sexual"}, headers=HTMX)
    again = client.post(f"{url}/report", {"reason": "violence"}, headers=HTMX).content.decode()

    assert "You had reported it already" in again
    assert Report.objects.get().reason == "violence"  # one open report per person
    page = client.get(url).content.decode()
    assert "Reported by you" in page and "You reported it as “violence”" in page
    assert 'value="violence" id="report-reason_1" required checked' in page
    assert not Prediction.objects.get(pk=prediction.pk).is_hidden

    client.force_login(make_trusted_reporter(user("carol"), sd_version))
    response = client.post(f"{url}/report", {"reason": "sexual"}, follow=True)

    assert response.redirect_chain == [("/gallery", 302)]
    assert "it is hidden until they do" in response.content.decode()
    assert Prediction.objects.get(pk=prediction.pk).is_hidden
    assert ModerationAction.objects.get().kind == "auto_hide"
    assert client.get(url).status_code == 410
    assert client.get("/gallery").content.decode().count(f'href="{url}"') == 0
    client.force_login(alice)
    owner_page = client.get(url).content.decode()
    assert (
        "Hidden while moderators review reports (sexual content, violence). Only you and moderators see it."
        in owner_page
    )
    assert "Hidden by moderators: Hidden" not in owner_page


def test_reports_hide_a_comparison_through_its_page(client, alice, bob, sd_version, settings):
    settings.REPORT_THRESHOLD = 1
    comparison = Comparison.objects.create(owner=alice, visibility="unlisted", input={"prompt": "a fox"})
    prediction = make_prediction(sd_version, owner=alice, visibility="unlisted", comparison=comparison)
    client.force_login(make_trusted_reporter(bob, sd_version))

    response = client.post(f"/c/{comparison.id}/report", {"reason": "illegal"}, headers=HTMX)

    assert "it is hidden until they do" in response.content.decode()
    assert client.get(f"/c/{comparison.id}").status_code == 410
    assert client.get(f"/p/{prediction.id}").status_code == 410


def test_three_new_accounts_reporting_leave_it_shown_and_queued(client, alice, sd_version):
    prediction = make_prediction(sd_version, owner=alice, visibility="public")

    for name in ("sock1", "sock2", "sock3"):
        client.force_login(user(name))
        response = client.post(f"/p/{prediction.id}/report", {"reason": "sexual"}, follow=True)
        assert response.redirect_chain == [(f"/p/{prediction.id}", 302)]
        assert "hidden until" not in response.content.decode()

    client.logout()
    assert client.get(f"/p/{prediction.id}").status_code == 200
    assert f'href="/p/{prediction.id}"' in client.get("/gallery").content.decode()
    assert Report.objects.filter(prediction=prediction, state="open").count() == 3


def test_anonymous_reports_reach_the_queue_but_never_hide(client, alice, sd_version, settings):
    settings.REPORT_THRESHOLD = 1
    prediction = make_prediction(sd_version, owner=alice, visibility="public")

    for address in [random_address() for _ in range(3)]:
        response = client.post(f"/p/{prediction.id}/report", {"reason": "spam"}, headers=HTMX, REMOTE_ADDR=address)
        assert "Thanks, moderators will review it." in response.content.decode()

    assert Report.objects.filter(prediction=prediction, reporter=None, state="open").count() == 3
    assert not Prediction.objects.get().is_hidden
    assert client.get(f"/p/{prediction.id}").status_code == 200


@pytest.mark.parametrize(
    "data, error",
    [
        ({"reason": "boring"}, "Select a valid choice. boring is not one of the available choices."),
        ({}, "Choose a reason."),
        ({"reason": "other", "text": "   "}, "Say what is wrong when you choose “Other”."),
        ({"reason": "spam", "text": "x" * 1001}, "Ensure this value has at most 1000 characters (it has 1001)."),
    ],
)
def test_bad_input_shows_an_error_by_the_field_and_stores_nothing(client, alice, sd_version, data, error):
    prediction = make_prediction(sd_version, owner=alice)

    swapped = client.post(f"/p/{prediction.id}/report", data, headers=HTMX)
    plain = client.post(f"/p/{prediction.id}/report", data)

    assert swapped.status_code == 200  # htmx swaps only 2xx answers
    assert plain.status_code == 400
    for response in (swapped, plain):
        html = response.content.decode()
        assert "Your report was not sent." in html
        assert f'class="error" id="report-{"text" if "text" in data else "reason"}_error">{error}' in html.replace(
            "&#x27;", "'"
        ).replace("&quot;", '"')
    assert "<details" in swapped.content.decode() and " open>" in swapped.content.decode()
    assert "<h1>Report this prediction</h1>" in plain.content.decode()
    assert not Report.objects.exists()


def test_reporting_what_you_cannot_see_answers_as_viewing_it(client, alice, bob, sd_version):
    private = make_prediction(sd_version, owner=alice, visibility="private")
    hidden = make_prediction(sd_version, owner=alice, visibility="unlisted")
    hidden.hide("Hidden by a moderator: spam")
    client.force_login(bob)

    assert client.post(f"/p/{private.id}/report", {"reason": "spam"}).status_code == 404
    assert client.post(f"/p/{hidden.id}/report", {"reason": "spam"}).status_code == 410
    assert client.post("/c/nosuchthing/report", {"reason": "spam"}).status_code == 404
    assert not Report.objects.exists()


def test_the_owner_cannot_report_their_own(client_alice, alice, sd_version):
    prediction = make_prediction(sd_version, owner=alice)

    response = client_alice.post(f"/p/{prediction.id}/report", {"reason": "spam"}, follow=True)

    assert response.redirect_chain == [(f"/p/{prediction.id}", 302)]
    assert "This prediction is yours" in response.content.decode()
    assert not Report.objects.exists()


def test_anonymous_reports_are_limited_per_network(client, alice, bob, sd_version, settings):
    settings.ANONYMOUS_REPORTS_PER_HOUR = 2
    prediction = make_prediction(sd_version, owner=alice)
    url = f"/p/{prediction.id}/report"
    network = f"2001:db8:{secrets.token_hex(2)}:{secrets.token_hex(2)}"

    assert client.post(url, {"reason": "spam"}, REMOTE_ADDR=f"{network}::1").status_code == 302
    assert client.post(url, {"reason": "spam"}, headers=HTMX, REMOTE_ADDR=f"{network}::2").status_code == 200
    refused = client.post(url, {"reason": "spam"}, REMOTE_ADDR=f"{network}::3")  # the same /64

    assert refused.status_code == 429
    assert "Too many reports from your network in the last hour" in refused.content.decode()
    assert Report.objects.count() == 2
    swapped = client.post(url, {"reason": "spam"}, headers=HTMX, REMOTE_ADDR=f"{network}::4")
    assert "Too many reports" in swapped.content.decode() and Report.objects.count() == 2

    # Another network may, and so may anyone signed in on this one.
    assert client.post(url, {"reason": "spam"}, REMOTE_ADDR=random_address()).status_code == 302
    client.force_login(bob)
    assert client.post(url, {"reason": "spam"}, REMOTE_ADDR=f"{network}::1").status_code == 302
    assert Report.objects.count() == 4


def test_a_report_needs_the_csrf_token(alice, sd_version):
    prediction = make_prediction(sd_version, owner=alice)
    browser = Client(enforce_csrf_checks=True, REMOTE_ADDR=random_address())

    assert browser.post(f"/p/{prediction.id}/report", {"reason": "spam"}).status_code == 403
    assert not Report.objects.exists()


def test_without_javascript_the_form_has_a_page_of_its_own(client, alice, sd_version):
    prediction = make_prediction(sd_version, owner=alice, prompt="a red fox in the snow")

    html = client.get(f"/p/{prediction.id}/report").content.decode()

    assert "<h1>Report this prediction</h1>" in html and "a red fox in the snow" in html
    assert f'action="/p/{prediction.id}/report"' in html and "hx-post" not in html


def test_behind_a_proxy_the_limit_counts_the_address_the_proxy_saw(client, alice, sd_version, settings):
    settings.ANONYMOUS_REPORTS_PER_HOUR = 1
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    prediction = make_prediction(sd_version, owner=alice)
    visitor = f"2001:db8:{secrets.token_hex(2)}:{secrets.token_hex(2)}::7"

    first = client.post(
        f"/p/{prediction.id}/report",
        {"reason": "spam"},
        REMOTE_ADDR="10.0.0.2",
        HTTP_X_FORWARDED_FOR=f"198.51.100.1, {visitor}",
    )
    second = client.post(
        f"/p/{prediction.id}/report", {"reason": "spam"}, REMOTE_ADDR="10.0.0.3", HTTP_X_FORWARDED_FOR=visitor
    )

    assert (first.status_code, second.status_code) == (302, 429)
    assert Report.objects.count() == 1
