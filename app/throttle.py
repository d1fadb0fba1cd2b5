"""Throttles for what has no row to count: log-in attempts, sign-ups,
password-reset requests and the runs of visitors without an account. Each
counts hits per key (a client address, a username, an email address) in
Django's cache, in a window that starts with the first hit; past the limit it
answers how many seconds are left until the window ends.

The cache is shared by every web process (settings.CACHES: Redis, else the
database). On Redis the counting is atomic, so a burst of simultaneous
requests cannot slip past a limit; the database cache may lose a count or two
to such a burst.
"""

import hashlib
import ipaddress
import math
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache

HOUR = 3600


def client_ip(request):
    """The address throttles count a request against: REMOTE_ADDR or, when
    that is a trusted proxy (LIGHTBOX_TRUSTED_PROXIES), the nearest
    X-Forwarded-For hop that is not one. Hops further left were written by the
    client and prove nothing. An IPv6 client counts as its /64 network, which
    one host usually has to itself."""
    address = _address(request.META.get("REMOTE_ADDR", ""))
    if address is None:
        return "unknown"
    proxies = [ipaddress.ip_network(entry, strict=False) for entry in settings.TRUSTED_PROXIES]
    if _trusted(address, proxies):
        for hop in reversed(request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")):
            hop = _address(hop)
            if hop is None:
                break  # not written by a proxy of ours: keep the last trusted hop
            address = hop
            if not _trusted(hop, proxies):
                break
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def _address(text):
    """An IP address from a header value ("1.2.3.4", "1.2.3.4:567",
    "[2001:db8::1]:80"), IPv4-mapped IPv6 as IPv4; None if it is none."""
    text = text.strip()
    if text.startswith("[") and "]" in text:
        text = text[1:text.index("]")]
    elif text.count(":") == 1:
        text = text.split(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _trusted(address, proxies):
    return any(address in network for network in proxies if network.version == address.version)


def wait_text(seconds):
    """"in 14 minutes", "in 40 seconds"."""
    if seconds < 60:
        return f"in {seconds} second{'s' if seconds != 1 else ''}"
    minutes = math.ceil(seconds / 60)
    return f"in {minutes} minute{'s' if minutes != 1 else ''}"


@dataclass(frozen=True)
class Throttle:
    """At most `limit` hits per key in `seconds` from the key's first hit
    (no limit when `limit` is None)."""

    scope: str
    limit: int | None
    seconds: int

    def _keys(self, key):
        # Hashed: keys stay short and cache-safe, and the cache holds no
        # usernames or email addresses.
        digest = hashlib.sha256(str(key).encode()).hexdigest()[:32]
        name = f"throttle:{self.scope}:{digest}"
        return name, name + ":start"

    def _remaining(self, start_key, now):
        cache.add(start_key, now, self.seconds)
        started = cache.get(start_key, now)
        return max(1, math.ceil(started + self.seconds - now))

    def hit(self, key, count=1):
        """Count `count` hits. Over the limit they are not counted, and the
        answer is the seconds until the window ends; else None."""
        if self.limit is None:
            return None
        counter, start = self._keys(key)
        remaining = self._remaining(start, time.time())
        if count > self.limit:
            return remaining
        if cache.add(counter, count, remaining):
            return None
        total = self._add(counter, count, remaining)
        if total > self.limit:
            self._add(counter, -count, remaining)
            return remaining
        return None

    def release(self, key, count=1):
        """Take back hits that turned out not to count (a successful log-in,
        a run that did not start)."""
        if self.limit is None:
            return
        counter, start = self._keys(key)
        started = cache.get(start)
        if started is not None:
            self._add(counter, -count, max(1, math.ceil(started + self.seconds - time.time())))

    def clear(self, key):
        cache.delete_many(self._keys(key))

    def _add(self, counter, delta, remaining):
        try:
            total = cache.incr(counter, delta)
        except ValueError:  # it expired just now
            total = max(delta, 0)
            cache.set(counter, total, remaining)
            return total
        # incr keeps the expiry on Redis; the database cache resets it.
        cache.touch(counter, remaining)
        return total


def login_by_username():
    return Throttle("login-user", settings.LOGIN_ATTEMPTS, settings.LOGIN_WINDOW)


def login_by_ip():
    return Throttle("login-ip", settings.LOGIN_ATTEMPTS_PER_IP, settings.LOGIN_WINDOW)


def signups_by_ip():
    return Throttle("signup-ip", settings.SIGNUPS_PER_IP_PER_HOUR, HOUR)


def password_reset_by_email():
    return Throttle("reset-email", settings.PASSWORD_RESETS, HOUR)


def password_reset_by_ip():
    return Throttle("reset-ip", settings.PASSWORD_RESETS_PER_IP, HOUR)


def visitor_runs():
    return Throttle("visitor-runs", settings.ANONYMOUS_PREDICTIONS_PER_HOUR, HOUR)


def anonymous_reports():
    return Throttle("anonymous-reports", settings.ANONYMOUS_REPORTS_PER_HOUR, HOUR)
