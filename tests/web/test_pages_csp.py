"""Every page works under a Content-Security-Policy without 'unsafe-inline'."""

import re

import pytest

from app.services import comparisons
from tests.web.conftest import make_prediction

pytestmark = pytest.mark.django_db(transaction=True)

INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I)
STYLE_ATTRIBUTE = re.compile(r"<[^>]+\sstyle=", re.I)
EVENT_ATTRIBUTE = re.compile(r"<[^>]+\son[a-z]+=", re.I)


def test_no_page_has_inline_scripts_styles_or_handlers(client_alice, alice, sd_version):
    prediction = make_prediction(sd_version, owner=alice)
    comparison = comparisons.start([sd_version], {"prompt": "a fox"}, owner=alice)
    urls = [
        "/",
        "/gallery",
        "/models",
        "/models/local/tiny-sd",
        f"/p/{prediction.id}",
        f"/c/{comparison.id}",
        "/account/",
        "/account/delete",
        "/account/password_change/",
    ]
    for url in urls:
        response = client_alice.get(url)
        html = response.content.decode()
        assert response.status_code == 200, url
        assert "'unsafe-inline'" not in response["Content-Security-Policy"]
        assert "script-src 'self'" in response["Content-Security-Policy"]
        assert not INLINE_SCRIPT.search(html), url
        assert not STYLE_ATTRIBUTE.search(html), url
        assert not EVENT_ATTRIBUTE.search(html), url
        assert "//cdn" not in html and "unpkg.com" not in html, url


def test_anonymous_pages_too(client, transactional_db):
    for url in ["/", "/gallery", "/account/login/", "/account/signup", "/account/password_reset/"]:
        response = client.get(url)
        assert response.status_code == 200, url
        assert not INLINE_SCRIPT.search(response.content.decode()), url
        assert not STYLE_ATTRIBUTE.search(response.content.decode()), url
