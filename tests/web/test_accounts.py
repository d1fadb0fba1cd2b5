"""Accounts: sign up, log in and out, password reset, tokens, deleting an account."""

import os
import re

import pytest
from django.contrib.auth import get_user_model
from django.core import mail

from app.models import ApiToken, Prediction
from tests.web.conftest import make_prediction

pytestmark = pytest.mark.django_db(transaction=True)


def test_sign_up_logs_the_new_user_in(client):
    response = client.post("/account/signup", {
        "username": "carol", "email": "carol@example.com",
        "password1": "a long enough passphrase", "password2": "a long enough passphrase",
    })

    assert response.status_code == 302 and response["Location"] == "/"
    assert "carol" in client.get("/").content.decode()


def test_sign_up_shows_what_is_wrong(client):
    response = client.post("/account/signup", {"username": "carol", "email": "x", "password1": "a", "password2": "b"})

    assert response.status_code == 200
    assert "Enter a valid email address." in response.content.decode()
    assert not get_user_model().objects.filter(username="carol").exists()


def test_log_in_and_out(client, alice):
    response = client.post("/account/login/", {"username": "alice", "password": "correct horse battery"})
    assert response.status_code == 302
    assert "Log out" in client.get("/").content.decode()

    client.post("/account/logout/")
    assert "Log in" in client.get("/").content.decode()


def test_password_reset_sends_a_link_that_sets_a_new_password(client, alice, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    client.post("/account/password_reset/", {"email": "alice@example.com"})

    [message] = mail.outbox
    link = re.search(r"http://testserver(/account/reset/\S+)", message.body).group(1)
    form_url = client.get(link)["Location"]
    client.post(form_url, {"new_password1": "another fine passphrase", "new_password2": "another fine passphrase"})

    assert client.login(username="alice", password="another fine passphrase")


def test_the_profile_needs_a_login(client, transactional_db):
    assert client.get("/account/")["Location"].startswith("/account/login/")


def test_create_a_token_shown_once_and_revoke_it(client_alice, alice):
    client_alice.post("/account/tokens", {"name": "laptop"})

    html = client_alice.get("/account/").content.decode()
    raw = re.search(r"<code>(lb_[^<]+)</code>", html).group(1)
    assert ApiToken.objects.authenticate(raw) == alice
    assert "lb_" + raw[3:] not in client_alice.get("/account/").content.decode()  # shown once

    token = ApiToken.objects.get()
    client_alice.post(f"/account/tokens/{token.id}/revoke")
    assert ApiToken.objects.authenticate(raw) is None


def test_others_cannot_revoke_my_token(client, alice, bob):
    token, _ = ApiToken.issue(alice)
    client.force_login(bob)

    assert client.post(f"/account/tokens/{token.id}/revoke").status_code == 404


def test_the_profile_lists_my_predictions(client_alice, alice, bob, sd_version):
    make_prediction(sd_version, owner=alice, prompt="my fox", visibility="private")
    make_prediction(sd_version, owner=bob, prompt="bob's fox")

    html = client_alice.get("/account/").content.decode()

    assert "my fox" in html and "bob&#x27;s fox" not in html


def test_delete_the_account_with_everything_in_it(client_alice, alice, sd_version):
    prediction = make_prediction(sd_version, owner=alice)
    path = prediction.outputs.get().file.path

    wrong = client_alice.post("/account/delete", {"password": "nope"})
    assert "That is not your password." in wrong.content.decode()

    client_alice.post("/account/delete", {"password": "correct horse battery"})

    assert not get_user_model().objects.filter(username="alice").exists()
    assert not Prediction.objects.exists()
    assert not os.path.exists(path)


def test_the_profile_changes_a_comparisons_visibility(client_alice, alice, sd_version):
    from app.models import Comparison

    comparison = Comparison.objects.create(owner=alice, input={"prompt": "my comparison"}, seed=1)
    make_prediction(sd_version, owner=alice, comparison=comparison, visibility="unlisted")
    assert "my comparison" in client_alice.get("/account/").content.decode()

    response = client_alice.post(f"/c/{comparison.id}/visibility", {"visibility": "private", "next": "/account/"})

    assert response["Location"] == "/account/"
    comparison.refresh_from_db()
    assert comparison.visibility == "private"
    assert comparison.predictions.get().visibility == "private"


@pytest.mark.parametrize("count", [1, 8])
def test_the_profile_runs_a_constant_number_of_queries(client_alice, alice, sd_version, django_assert_max_num_queries,
                                                       count):
    from app.models import Comparison

    for index in range(count):
        comparison = Comparison.objects.create(owner=alice, input={"prompt": f"comparison {index}"}, seed=1)
        make_prediction(sd_version, owner=alice, comparison=comparison)

    with django_assert_max_num_queries(9):
        html = client_alice.get("/account/").content.decode()
    assert html.count("comparison-visibility-") == 2 * count  # label and select
