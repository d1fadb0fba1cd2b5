"""Accounts: sign up, log in and out, password reset, tokens, deleting an account."""

import os
import re

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import Client

from app.models import ApiToken, Prediction
from app.services import storage
from tests.web.conftest import make_prediction

pytestmark = pytest.mark.django_db(transaction=True)


def test_sign_up_logs_the_new_user_in(client):
    response = client.post(
        "/account/signup",
        {
            "username": "carol",
            "email": "carol@example.com",
            "password1": "a long enough passphrase",
            "password2": "a long enough passphrase",
        },
    )

    assert response.status_code == 302 and response["Location"] == "/"
    assert "carol" in client.get("/").content.decode()


def test_sign_up_shows_what_is_wrong(client):
    response = client.post("/account/signup", {"username": "carol", "email": "x", "password1": "a", "password2": "b"})

    assert response.status_code == 200
    assert "Enter a valid email address." in response.content.decode()
    assert not get_user_model().objects.filter(username="carol").exists()


def _from(address):
    return Client(REMOTE_ADDR=address)


def _sign_up(client, username):
    return client.post(
        "/account/signup",
        {
            "username": username,
            "email": f"{username}@example.com",
            "password1": "a long enough passphrase",
            "password2": "a long enough passphrase",
        },
    )


def test_sign_ups_are_limited_per_address(settings, transactional_db):
    settings.SIGNUPS_PER_IP_PER_HOUR = 2
    for name in ("sock1", "sock2"):
        assert _sign_up(_from("203.0.113.7"), name).status_code == 302

    refused = _sign_up(_from("203.0.113.7"), "sock3")

    assert refused.status_code == 429
    assert 3000 < int(refused["Retry-After"]) <= 3600
    assert "Too many accounts were made from your network. Try again in 60 minutes." in refused.content.decode()
    assert not get_user_model().objects.filter(username="sock3").exists()
    assert _sign_up(_from("198.51.100.2"), "sock3").status_code == 302  # another address


def test_a_sign_up_that_fails_uses_up_nothing(client, settings, transactional_db):
    settings.SIGNUPS_PER_IP_PER_HOUR = 1

    assert client.post("/account/signup", {"username": "carol", "email": "x"}).status_code == 200

    assert _sign_up(client, "carol").status_code == 302


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
def test_the_profile_runs_a_constant_number_of_queries(
    client_alice, alice, sd_version, django_assert_max_num_queries, count
):
    from app.models import Comparison

    for index in range(count):
        comparison = Comparison.objects.create(owner=alice, input={"prompt": f"comparison {index}"}, seed=1)
        make_prediction(sd_version, owner=alice, comparison=comparison)

    with django_assert_max_num_queries(9):
        html = client_alice.get("/account/").content.decode()
    assert html.count("comparison-visibility-") == 2 * count  # label and select


def test_opting_in_shows_nsfw_images_unblurred(client, alice, bob, sd_version):
    prediction = make_prediction(sd_version, owner=alice, prompt="a daring fox")
    output = prediction.outputs.get()
    storage.mark_nsfw(output)
    output.refresh_from_db()
    client.force_login(bob)
    assert output.file.url not in client.get(f"/p/{prediction.id}").content.decode()

    client.post("/account/content", {"show_nsfw": "on"})

    assert output.file.url in client.get(f"/p/{prediction.id}").content.decode()
    client.post("/account/content", {})
    assert output.file.url not in client.get(f"/p/{prediction.id}").content.decode()


# --- Sign-up modes and invites (LIGHTBOX_SIGNUP) -------------------------------------

SIGNUP = {
    "username": "carol",
    "email": "carol@example.com",
    "password1": "a long enough passphrase",
    "password2": "a long enough passphrase",
}


def _invite(**fields):
    from app.models import Invite

    return Invite.objects.create(**fields)


def test_closed_sign_up_says_so_and_creates_nothing(client, settings, transactional_db):
    settings.SIGNUP = "closed"

    page = client.get("/account/signup")
    posted = client.post("/account/signup", SIGNUP)

    assert page.status_code == 403 and "Sign-up is closed" in page.content.decode()
    assert "password1" not in page.content.decode()
    assert posted.status_code == 403
    assert not get_user_model().objects.exists()
    assert 'href="/account/signup"' not in client.get("/").content.decode()
    assert 'href="/account/signup"' not in client.get("/account/login/").content.decode()


def test_open_sign_up_needs_no_invite_and_links_to_it(client, transactional_db):
    assert 'href="/account/signup"' in client.get("/").content.decode()
    assert 'name="invite"' not in client.get("/account/signup").content.decode()


def test_invite_sign_up_needs_a_code(client, settings, transactional_db):
    settings.SIGNUP = "invite"

    response = client.post("/account/signup", SIGNUP)

    assert response.status_code == 200
    assert 'id="id_invite_error">This field is required.' in response.content.decode()
    assert not get_user_model().objects.exists()


def test_an_invite_link_fills_in_the_code_and_signs_up_once(client, settings, transactional_db):
    settings.SIGNUP = "invite"
    invite = _invite(note="for carol")

    page = client.get(f"/account/signup?invite={invite.code}")
    assert f'value="{invite.code}"' in page.content.decode()

    response = client.post("/account/signup", {**SIGNUP, "invite": invite.code})

    assert response.status_code == 302
    invite.refresh_from_db()
    carol = get_user_model().objects.get(username="carol")
    assert invite.used_by == carol and invite.used_at is not None


@pytest.mark.parametrize(
    "state, message",
    [
        ("used", "This invite code has already been used."),
        ("expired", "This invite code expired on"),
        ("unknown", "This invite code is not valid."),
    ],
)
def test_a_bad_invite_code_is_a_field_error_and_creates_nothing(client, settings, alice, state, message):
    from datetime import timedelta

    from django.utils import timezone

    settings.SIGNUP = "invite"
    invite = _invite()
    if state == "used":
        invite.use(alice)
    elif state == "expired":
        invite.expires_at = timezone.now() - timedelta(minutes=1)
        invite.save()
    code = invite.code if state != "unknown" else "not-a-code"

    response = client.post("/account/signup", {**SIGNUP, "invite": code})

    html = response.content.decode()
    assert response.status_code == 200
    assert f'id="id_invite_error">{message}' in html
    assert not get_user_model().objects.filter(username="carol").exists()
    # The link itself says so before anyone types a password.
    assert message in client.get(f"/account/signup?invite={code}").content.decode()


def test_a_pasted_invite_link_works_as_the_code(client, settings, transactional_db):
    settings.SIGNUP = "invite"
    invite = _invite()

    response = client.post("/account/signup", {**SIGNUP, "invite": f"  {invite.signup_url} "})

    assert response.status_code == 302
    invite.refresh_from_db()
    assert invite.used_at is not None


def test_two_people_racing_for_one_invite_only_one_gets_an_account(settings, transactional_db, monkeypatch):
    import threading

    from django.db import connection

    from app.forms import SignupForm

    settings.SIGNUP = "invite"
    invite = _invite()
    # Both have the code checked as unused before either saves: the race.
    barrier = threading.Barrier(2, timeout=10)
    clean_invite = SignupForm.clean_invite

    def checked_then_wait(form):
        code = clean_invite(form)
        barrier.wait()
        return code

    monkeypatch.setattr(SignupForm, "clean_invite", checked_then_wait)
    responses = {}

    def sign_up(name):
        try:
            responses[name] = Client().post(
                "/account/signup",
                {
                    **SIGNUP,
                    "username": name,
                    "email": f"{name}@example.com",
                    "invite": invite.code,
                },
            )
        finally:
            connection.close()

    threads = [threading.Thread(target=sign_up, args=(name,)) for name in ("carol", "dave")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(response.status_code for response in responses.values()) == [200, 302]
    loser = next(response for response in responses.values() if response.status_code == 200)
    assert "This invite code has already been used." in loser.content.decode()
    [user] = get_user_model().objects.all()
    invite.refresh_from_db()
    assert invite.used_by == user


def test_staff_create_invites_in_the_admin_and_see_the_link(admin_client, admin_user):
    from app.models import Invite

    assert "Shown once the invite is saved." in admin_client.get("/admin/app/invite/add/").content.decode()
    response = admin_client.post("/admin/app/invite/add/", {"note": "for dave", "expires_at_0": "", "expires_at_1": ""})

    assert response.status_code == 302
    invite = Invite.objects.get()
    assert invite.created_by == admin_user and invite.note == "for dave"
    assert f"/account/signup?invite={invite.code}" in admin_client.get("/admin/app/invite/").content.decode()
    assert invite.signup_url in admin_client.get(response["Location"]).content.decode()  # the message


def test_create_invite_prints_sign_up_links(transactional_db):
    import io

    from django.core.management import call_command

    from app.models import Invite

    out = io.StringIO()
    call_command("create_invite", "--count", "2", "--days", "7", "--note", "workshop", stdout=out, stderr=io.StringIO())

    links = out.getvalue().split()
    assert len(links) == 2
    for link, invite in zip(sorted(links), sorted(Invite.objects.all(), key=lambda i: i.signup_url)):
        assert link == invite.signup_url and "/account/signup?invite=" in link
        assert invite.expires_at is not None and invite.note == "workshop"


# --- Log-in and password-reset throttling -------------------------------------------

WRONG = "not the password"
RIGHT = "correct horse battery"


def _log_in(client, username, password):
    return client.post("/account/login/", {"username": username, "password": password})


def _errors(response):
    return re.findall(r'<div class="form-errors" role="alert"><ul><li>([^<]+)</li>', response.content.decode())


def test_log_ins_are_refused_after_n_failures_from_one_address_even_with_the_right_password(client, alice, settings):
    settings.LOGIN_ATTEMPTS_PER_USER_IP = 3
    for _ in range(3):
        assert _log_in(client, "alice", WRONG).status_code == 200

    refused = _log_in(client, "alice", RIGHT)

    assert refused.status_code == 429
    assert _errors(refused) == ["Too many failed log-in attempts. Try again in 15 minutes."]
    assert 1 <= int(refused["Retry-After"]) <= 15 * 60
    assert "Log out" not in client.get("/").content.decode()


def test_failures_from_elsewhere_do_not_lock_the_owner_out(alice, bob):
    # The defaults: 5 attempts per username and address, 20 per address.
    attacker, owner = _from("203.0.113.7"), _from("198.51.100.2")
    assert [_log_in(attacker, "alice", WRONG).status_code for _ in range(5)] == [200] * 5

    assert _log_in(attacker, "alice", RIGHT).status_code == 429  # the attacker is refused for alice
    assert _log_in(owner, "alice", RIGHT).status_code == 302  # alice, from her address, is not

    # 15 more failures on other names make 20 from the attacker's address: then it
    # is refused for everyone, while everyone elsewhere logs in.
    names = [f"user{n}" for n in range(3)]
    assert [_log_in(attacker, name, WRONG).status_code for name in names for _ in range(5)] == [200] * 15
    assert _log_in(attacker, "bob", RIGHT).status_code == 429
    assert _log_in(attacker, "nobody", WRONG).status_code == 429
    assert _log_in(_from("198.51.100.3"), "bob", RIGHT).status_code == 302


def test_an_unknown_username_gets_the_same_answers(client, alice, settings):
    settings.LOGIN_ATTEMPTS_PER_USER_IP = 2
    answers = {}
    for username in ("alice", "nobody"):
        answers[username] = [
            (response.status_code, _errors(response))
            for response in (_log_in(client, username, WRONG) for _ in range(3))
        ]

    assert answers["alice"] == answers["nobody"]
    assert [status for status, _ in answers["nobody"]] == [200, 200, 429]


def test_many_addresses_guessing_one_username_are_capped_but_its_owner_still_logs_in(alice, settings):
    settings.LOGIN_ATTEMPTS_PER_USER = 3
    home = _from("198.51.100.2")
    assert _log_in(home, "alice", RIGHT).status_code == 302  # alice has logged in from here before
    home.post("/account/logout/")

    answers = {}
    for username in ("alice", "nobody"):
        bots = [_from(f"203.0.113.{n}") for n in range(1, 5)]
        answers[username] = [_log_in(bot, username, WRONG).status_code for bot in bots]
        answers[username].append(_log_in(_from("203.0.113.99"), username, RIGHT).status_code)

    # A username, real or not, takes 3 failures in the window from all
    # addresses together; then only addresses it has logged in from get in.
    assert answers["alice"] == answers["nobody"] == [200, 200, 200, 429, 429]
    assert _log_in(home, "alice", RIGHT).status_code == 302


def test_a_successful_log_in_clears_the_count_of_its_address(client, alice, settings):
    settings.LOGIN_ATTEMPTS_PER_USER_IP = 2
    _log_in(client, "alice", WRONG)
    assert _log_in(client, "alice", RIGHT).status_code == 302
    client.post("/account/logout/")

    assert [_log_in(client, "alice", WRONG).status_code for _ in range(3)] == [200, 200, 429]


def test_the_username_count_ignores_case(client, alice, settings):
    settings.LOGIN_ATTEMPTS_PER_USER_IP = 2
    _log_in(client, "alice", WRONG)
    _log_in(client, "ALICE", WRONG)

    assert _log_in(client, "Alice", WRONG).status_code == 429


def test_one_address_trying_many_usernames_is_refused(alice, settings):
    settings.LOGIN_ATTEMPTS_PER_IP = 3
    attacker, elsewhere = _from("203.0.113.7"), _from("198.51.100.2")
    statuses = [_log_in(attacker, name, WRONG).status_code for name in ("a", "b", "c", "d")]

    assert statuses == [200, 200, 200, 429]
    assert _log_in(elsewhere, "alice", RIGHT).status_code == 302


def test_log_in_works_again_once_the_window_has_passed(client, alice, settings):
    import time

    # 2 s: the database cache keeps expiry times in whole seconds.
    settings.LOGIN_ATTEMPTS_PER_USER_IP, settings.LOGIN_WINDOW = 1, 2
    _log_in(client, "alice", WRONG)
    refused = _log_in(client, "alice", RIGHT)
    assert refused.status_code == 429 and re.search(r"Try again in [12] seconds?\.", _errors(refused)[0])

    time.sleep(2.5)

    assert _log_in(client, "alice", RIGHT).status_code == 302


def test_the_admin_log_in_shares_the_count(client, admin_user, settings):
    settings.LOGIN_ATTEMPTS_PER_USER_IP = 2
    _log_in(client, "admin", WRONG)
    client.post("/admin/login/", {"username": "admin", "password": WRONG})

    refused = client.post("/admin/login/", {"username": "admin", "password": "password"})

    assert "Too many failed log-in attempts." in refused.content.decode()
    assert _log_in(client, "admin", "password").status_code == 429


def test_the_old_name_of_the_per_username_and_address_limit_still_works():
    import subprocess
    import sys

    def limit(**env):
        code = "from lightbox import settings; print(settings.LOGIN_ATTEMPTS_PER_USER_IP)"
        env = {key: value for key, value in os.environ.items() if not key.startswith("LIGHTBOX_LOGIN")} | env
        return subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        ).stdout.strip()

    assert limit() == "5"
    assert limit(LIGHTBOX_LOGIN_ATTEMPTS="3") == "3"
    assert limit(LIGHTBOX_LOGIN_ATTEMPTS="3", LIGHTBOX_LOGIN_ATTEMPTS_PER_USER_IP="4") == "4"


def test_password_reset_requests_are_throttled_per_address(client, alice, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.PASSWORD_RESETS = 2
    for email in ("alice@example.com", "nobody@example.com"):
        statuses = [client.post("/account/password_reset/", {"email": email}).status_code for _ in range(2)]
        refused = client.post("/account/password_reset/", {"email": email})

        assert statuses == [302, 302] and refused.status_code == 429
        assert 'id="id_email_error">Too many password reset requests. Try again in 60 minutes.' in (
            refused.content.decode()
        )
        assert int(refused["Retry-After"]) > 3000
    assert len(mail.outbox) == 2  # alice's two; none for the unknown address


def test_a_weak_password_is_told_under_the_password_and_a_mismatch_under_the_confirmation(client):
    from django.contrib.auth import get_user_model

    weak = client.post(
        "/account/signup", {"username": "carol", "email": "c@example.com", "password1": "abc", "password2": "abc"}
    )
    html = weak.content.decode()
    assert '<p class="error" id="id_password1_error">This password is too short.' in html
    assert 'id="id_password2_error"' not in html

    mismatch = client.post(
        "/account/signup",
        {"username": "carol", "email": "c@example.com", "password1": "a long enough passphrase", "password2": "other"},
    )
    html = mismatch.content.decode()
    assert 'id="id_password2_error">The two password fields didn’t match.' in html
    assert 'id="id_password1_error"' not in html
    assert not get_user_model().objects.filter(username="carol").exists()


def test_my_history_changes_and_deletes_several_of_ones_own_comparisons_at_once(client, alice, bob, sd_version):
    from app.models import Comparison
    from tests.web.conftest import make_prediction

    def made(owner, prompt):
        comparison = Comparison.objects.create(owner=owner, input={"prompt": prompt}, seed=1, visibility="unlisted")
        make_prediction(sd_version, owner=owner, prompt=prompt, visibility="unlisted", comparison=comparison)
        return comparison

    first, second, third, bobs = made(alice, "a fox"), made(alice, "an owl"), made(alice, "a hare"), made(bob, "a bee")
    client.force_login(alice)

    html = client.get("/account/history").content.decode()
    assert ">My history</a>" in html and "a fox" in html and "a bee" not in html

    response = client.post(
        "/account/history/bulk", {"ids": [first.id, second.id, bobs.id], "action": "public"}, follow=True
    )
    assert "2 comparisons now public." in response.content.decode()
    assert Comparison.objects.get(pk=first.pk).visibility == "public"
    assert Comparison.objects.get(pk=first.pk).predictions.get().visibility == "public"
    assert Comparison.objects.get(pk=bobs.pk).visibility == "unlisted"  # not hers

    response = client.post(
        "/account/history/bulk", {"ids": [second.id, third.id, bobs.id], "action": "delete"}, follow=True
    )
    assert "2 comparisons deleted." in response.content.decode()
    assert set(Comparison.objects.values_list("pk", flat=True)) == {first.pk, bobs.pk}

    response = client.post("/account/history/bulk", {"action": "delete"}, follow=True)
    assert "Tick at least one comparison first." in response.content.decode()
    assert Comparison.objects.count() == 2


def test_changing_a_password_tells_a_weak_one_under_the_new_password(client, alice):
    client.force_login(alice)

    response = client.post(
        "/account/password_change/",
        {"old_password": "correct horse battery", "new_password1": "abc", "new_password2": "abc"},
    )

    html = response.content.decode()
    assert 'id="id_new_password1_error">This password is too short.' in html
    assert 'id="id_new_password2_error"' not in html
