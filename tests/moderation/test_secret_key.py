"""The secret key: none in the source, one made once for `make run`, refused
start without one, and a rotation that keeps existing links working while the
old key is in SECRET_KEY_FALLBACKS."""

import base64
import hmac
import json
import os
import stat
import subprocess
import sys
import time

import pytest
from django.core import signing
from django.test import Client, override_settings
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from app.models import Prediction
from app.services import api_json as api
from app.services import storage
from app.services.backends import cog
from tests.conftest import ROOT

pytestmark = pytest.mark.django_db(transaction=True)

# The key Lightbox used to fall back to, published in its source.
PUBLISHED_KEY = "lightbox-insecure-development-key-change-me-in-production"
OLD_KEY, NEW_KEY = "old-" + "k" * 60, "new-" + "n" * 60


def _settings_in_a_new_process(tmp_path, **env):
    """The SECRET_KEY a fresh process reads (exit status, stdout, stderr)."""
    base = {
        key: value
        for key, value in os.environ.items()
        if key not in ("SECRET_KEY", "SECRET_KEY_FALLBACKS", "LIGHTBOX_SECRET_KEY_FILE", "LIGHTBOX_SECRET_KEY_CREATE")
    }
    result = subprocess.run(
        [sys.executable, "-c", "from lightbox import settings; print(settings.SECRET_KEY)"],
        cwd=ROOT,
        env={**base, "LIGHTBOX_VAR_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.returncode, result.stdout.strip(), result.stderr


def test_without_a_key_the_site_refuses_to_start_and_says_how_to_set_one(tmp_path):
    status, _, error = _settings_in_a_new_process(tmp_path)

    assert status != 0
    assert "ImproperlyConfigured" in error
    assert 'python -c "import secrets; print(secrets.token_urlsafe(50))"' in error
    assert "SECRET_KEY" in error and str(tmp_path / "secret_key") in error
    assert not (tmp_path / "secret_key").exists()  # nothing made behind the operator's back


def test_make_run_makes_a_private_key_file_once_and_reuses_it(tmp_path):
    status, first, error = _settings_in_a_new_process(tmp_path, LIGHTBOX_SECRET_KEY_CREATE="1")
    assert status == 0, error
    key_file = tmp_path / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(first) >= 50 and first != PUBLISHED_KEY

    # Later runs read it, with or without the flag that creates it.
    assert _settings_in_a_new_process(tmp_path, LIGHTBOX_SECRET_KEY_CREATE="1")[1] == first
    assert _settings_in_a_new_process(tmp_path)[1] == first
    # The environment wins; another file can be named.
    assert _settings_in_a_new_process(tmp_path, SECRET_KEY="from-the-environment")[1] == "from-the-environment"
    other = tmp_path / "elsewhere"
    other.write_text("from-another-file\n")
    assert _settings_in_a_new_process(tmp_path, LIGHTBOX_SECRET_KEY_FILE=str(other))[1] == "from-another-file"


def test_check_deploy_is_clean_with_the_key_make_run_makes(tmp_path):
    env = {key: value for key, value in os.environ.items() if key not in ("SECRET_KEY", "DJANGO_ALLOW_ASYNC_UNSAFE")}
    env.update(
        DEBUG="False",
        LIGHTBOX_HTTPS="1",
        ALLOWED_HOSTS="lightbox.example.com",
        SITE_URL="https://lightbox.example.com",
        LIGHTBOX_VAR_DIR=str(tmp_path),
        LIGHTBOX_SECRET_KEY_CREATE="1",
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "secret_key").exists()


# --- Links signed with the published key, and rotation ---


def _cog_webhook_status(url):
    # An empty body: a good token gets as far as "bad request", a bad one is forbidden.
    return (
        Client()
        .post(url.removeprefix(storage.settings.SITE_URL), data=b"", content_type="application/json")
        .status_code
    )


def test_links_signed_with_the_published_key_are_refused(make_prediction, alice):
    output = make_prediction(owner=alice, visibility="private").outputs.get()
    prediction = output.prediction

    with override_settings(SECRET_KEY=PUBLISHED_KEY):
        forged_media = storage.signed_url(output.file, alice)
        forged_hook = cog.webhook_url(prediction)

    assert Client().get(forged_media).status_code == 403
    assert _cog_webhook_status(forged_hook) == 403
    assert Client().get(storage.signed_url(output.file, alice)).status_code == 200
    assert _cog_webhook_status(cog.webhook_url(prediction)) == 400


def test_links_signed_before_a_rotation_work_while_the_old_key_is_a_fallback(settings, make_prediction, alice):
    output = make_prediction(owner=alice, visibility="private").outputs.get()
    settings.SECRET_KEY = OLD_KEY
    media_url, hook_url = storage.signed_url(output.file, alice), cog.webhook_url(output.prediction)

    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = NEW_KEY, [OLD_KEY]
    assert Client().get(media_url).status_code == 200
    assert _cog_webhook_status(hook_url) == 400

    settings.SECRET_KEY_FALLBACKS = []
    assert Client().get(media_url).status_code == 403
    assert _cog_webhook_status(hook_url) == 403


def test_a_tampered_or_expired_link_is_refused_with_fallbacks_too(settings, make_prediction, alice):
    output = make_prediction(owner=alice, visibility="private").outputs.get()
    settings.SECRET_KEY = OLD_KEY
    expired = storage.signed_url(output.file, alice, now=time.time() - 2 * settings.MEDIA_URL_TTL)
    hook_url = cog.webhook_url(output.prediction)
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = NEW_KEY, [OLD_KEY]

    assert Client().get(expired).status_code == 403
    other = Prediction.objects.create(version=output.prediction.version, owner=alice, input={"prompt": "x"})
    assert _cog_webhook_status(hook_url.replace(output.prediction.id, other.id)) == 403
    assert _cog_webhook_status(hook_url + ":" + output.prediction.id) in (403, 404)


# --- Users' webhook secrets ---


def _delivery(user):
    body = json.dumps({"id": "p1", "status": "succeeded"})
    return body, api.webhook_headers(Prediction(owner=user), body)


def test_a_webhook_secret_is_not_computable_from_the_published_key(alice):
    published = hmac.new(PUBLISHED_KEY.encode(), f"webhook-secret:{alice.pk}".encode(), "sha256").digest()
    guessed = "whsec_" + base64.b64encode(published[:24]).decode()
    body, headers = _delivery(alice)

    with pytest.raises(WebhookVerificationError):
        Webhook(guessed).verify(body, headers)
    assert Webhook(api.webhook_secret(alice)).verify(body, headers)


def test_webhook_secrets_differ_per_user_and_follow_a_rotation(settings, alice, bob):
    settings.SECRET_KEY = OLD_KEY
    old_secret = api.webhook_secret(alice)
    assert old_secret != api.webhook_secret(bob)
    assert old_secret == api.webhook_secret(alice)  # stable while the key is

    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = NEW_KEY, [OLD_KEY]
    new_secret = api.webhook_secret(alice)
    body, headers = _delivery(alice)
    # A receiver that has not fetched the new secret yet still verifies.
    assert Webhook(old_secret).verify(body, headers) and Webhook(new_secret).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(api.webhook_secret(bob)).verify(body, headers)

    settings.SECRET_KEY_FALLBACKS = []
    body, headers = _delivery(alice)
    with pytest.raises(WebhookVerificationError):
        Webhook(old_secret).verify(body, headers)


def test_each_purpose_signs_with_its_own_salt(settings, make_prediction, alice):
    output = make_prediction(owner=alice).outputs.get()
    token = cog.webhook_url(output.prediction).rsplit("/", 1)[1].rstrip("/")

    # A Cog webhook token is no media signature, nor the other way round.
    assert token != signing.Signer(salt=storage.MEDIA_SIGNER_SALT).signature(output.prediction.id)
    assert storage.signed_path_holder(f"{int(time.time()) + 600}.0.{token}", output.file.name) is None
