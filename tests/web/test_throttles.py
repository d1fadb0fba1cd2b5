"""Visitors' runs limited per client address, limits refused on the page (not
a server error), and which address a request counts against."""

import pytest
from django.test import Client, RequestFactory

from app.core.throttle import client_ip
from app.models import Comparison, Prediction

pytestmark = pytest.mark.django_db(transaction=True)


def _run(client, *versions, prompt="a fox"):
    return client.post("/run", {"version": [version.id for version in versions], "prompt": prompt})


def _visitor(address="203.0.113.7"):
    return Client(REMOTE_ADDR=address)


@pytest.fixture
def visitors_may_run(settings):
    settings.ANONYMOUS_RUNS = True
    settings.ANONYMOUS_PREDICTIONS_PER_HOUR = 3
    return settings


def test_visitors_are_limited_per_address_and_told_when_to_retry(visitors_may_run, sd_version, turbo_version):
    visitor = _visitor()
    assert _run(visitor, sd_version, turbo_version).status_code == 302  # two predictions
    assert _run(visitor, sd_version).status_code == 302  # the third

    refused = _run(visitor, sd_version)

    html = refused.content.decode()
    assert refused.status_code == 429
    assert "Nothing was run." in html
    assert "Without an account you can start 3 predictions an hour from one address. Try again in 60 minutes" in html
    assert 3000 < int(refused["Retry-After"]) <= 3600
    assert Prediction.objects.count() == 3
    assert _run(_visitor("198.51.100.2"), sd_version).status_code == 302  # another address


def test_a_refused_run_uses_up_nothing(visitors_may_run, sd_version, turbo_version):
    visitor = _visitor()
    _run(visitor, sd_version, turbo_version)

    assert _run(visitor, sd_version, turbo_version).status_code == 429  # would make four
    assert _run(visitor, sd_version, prompt="").status_code == 400  # invalid: not counted either
    assert _run(visitor, sd_version).status_code == 302  # the one left


def test_more_models_than_the_limit_says_to_pick_fewer(visitors_may_run, settings, sd_version, turbo_version):
    settings.ANONYMOUS_PREDICTIONS_PER_HOUR = 1

    refused = _run(_visitor(), sd_version, turbo_version)

    assert refused.status_code == 429 and "Pick fewer models" in refused.content.decode()
    assert not Comparison.objects.exists()


def test_a_rerun_counts_against_the_same_limit(visitors_may_run, sd_version):
    visitor = _visitor()
    comparison_url = [_run(visitor, sd_version)["Location"] for _ in range(3)][0]

    response = visitor.post(f"{comparison_url}/rerun", follow=True)

    assert "Could not rerun: Without an account you can start 3 predictions an hour" in response.content.decode()
    assert Prediction.objects.count() == 3


def test_signed_in_people_are_not_counted_by_address(visitors_may_run, client_alice, sd_version):
    for _ in range(4):
        assert _run(client_alice, sd_version).status_code == 302


def test_a_signed_in_limit_is_a_429_page_not_a_server_error(client_alice, settings, sd_version):
    settings.RATE_LIMIT_PER_MINUTE = 1
    _run(client_alice, sd_version)

    refused = _run(client_alice, sd_version)

    assert refused.status_code == 429 and int(refused["Retry-After"]) >= 1
    assert "You can start 1 predictions a minute." in refused.content.decode()
    assert Prediction.objects.count() == 1


def test_the_forwarded_address_counts_only_behind_a_trusted_proxy(visitors_may_run, settings, sd_version):
    settings.ANONYMOUS_PREDICTIONS_PER_HOUR = 1
    proxy = Client(REMOTE_ADDR="10.0.0.5")
    _run(proxy, sd_version)
    # Without LIGHTBOX_TRUSTED_PROXIES, anyone could send a fresh X-Forwarded-For.
    assert (
        proxy.post(
            "/run", {"version": sd_version.id, "prompt": "a fox"}, headers={"X-Forwarded-For": "192.0.2.1"}
        ).status_code
        == 429
    )

    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    for client_address in ("192.0.2.1", "192.0.2.2"):
        assert (
            proxy.post(
                "/run", {"version": sd_version.id, "prompt": "a fox"}, headers={"X-Forwarded-For": client_address}
            ).status_code
            == 302
        )


# --- client_ip -----------------------------------------------------------------------


def _ip(remote, forwarded=None):
    headers = {"X-Forwarded-For": forwarded} if forwarded is not None else {}
    return client_ip(RequestFactory(REMOTE_ADDR=remote, headers=headers).get("/"))


def test_without_trusted_proxies_the_client_is_remote_addr(settings):
    settings.TRUSTED_PROXIES = []

    assert _ip("203.0.113.7", "192.0.2.1") == "203.0.113.7"


def test_behind_trusted_proxies_the_client_is_the_nearest_untrusted_hop(settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8", "127.0.0.1"]

    # The left-most value is whatever the client sent: it proves nothing.
    assert _ip("127.0.0.1", "6.6.6.6, 203.0.113.9, 10.1.2.3") == "203.0.113.9"
    assert _ip("10.0.0.1", "203.0.113.9:5050") == "203.0.113.9"
    assert _ip("10.0.0.1", "") == "10.0.0.1"
    assert _ip("10.0.0.1", "not an address, 10.0.0.2") == "10.0.0.2"
    # A request that did not come through the proxy is taken at its word.
    assert _ip("203.0.113.50", "192.0.2.1") == "203.0.113.50"


def test_ipv6_clients_count_per_64(settings):
    settings.TRUSTED_PROXIES = ["::1"]

    assert _ip("2001:db8:1:2:aaaa::1") == _ip("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert _ip("::1", "[2001:db8::7]:443") == "2001:db8::/64"
    assert _ip("::ffff:203.0.113.7") == "203.0.113.7"
