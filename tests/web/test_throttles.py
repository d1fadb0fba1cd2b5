"""Which address a request counts against (app.throttle.client_ip)."""

from django.test import RequestFactory

from app.throttle import client_ip


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
