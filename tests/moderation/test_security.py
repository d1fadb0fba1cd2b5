"""Security headers, and `manage.py check --deploy` clean under production settings."""

import os
import secrets
import subprocess
import sys

import pytest
from django.test import Client

from tests.conftest import ROOT

pytestmark = pytest.mark.django_db


def test_every_response_carries_a_csp_without_unsafe_inline():
    for url in ("/admin/login/", "/healthz", "/v1/predictions", "/media/outputs/x/none.png"):
        response = Client().get(url)
        policy = response["Content-Security-Policy"]
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["X-Frame-Options"] == "DENY"


def test_check_deploy_is_clean_under_production_settings(tmp_path):
    env = {
        **os.environ,
        "DEBUG": "False",
        "LIGHTBOX_HTTPS": "1",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "lightbox.example.com",
        "SITE_URL": "https://lightbox.example.com",
        "LIGHTBOX_VAR_DIR": str(tmp_path),
    }
    # The browser tests allow Django's ORM inside Playwright's event loop; a
    # deployment never sets that.
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_https_settings_turn_on_hsts_and_secure_cookies(settings):
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_REDIRECT_EXEMPT = [r"^healthz$"]

    assert Client().get("/admin/login/").status_code == 301
    assert Client().get("/healthz").status_code != 301
    secure = Client().get("/admin/login/", secure=True)
    assert secure["Strict-Transport-Security"].startswith("max-age=31536000")
