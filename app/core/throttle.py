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
DAY = 24 * HOUR
# How long a username's successful log-in from an address exempts that
# address from the username's cap across all addresses (login_attempt).
KNOWN_ADDRESS_DAYS = 30


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
        text = text[1 : text.index("]")]
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
    """ "in 14 minutes", "in 40 seconds"."""
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
        name = _cache_key(self.scope, key)
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


def _cache_key(scope, key):
    # Hashed: keys stay short and cache-safe, and the cache holds no
    # usernames or email addresses.
    digest = hashlib.sha256(str(key).encode()).hexdigest()[:32]
    return f"throttle:{scope}:{digest}"


def hit_each(*counts):
    """Count a hit on each (throttle, key) of `counts` in turn. If one refuses,
    take back the hits before it and answer its wait, so that a refused
    request uses up nothing; else None."""
    for done, (throttle, key) in enumerate(counts):
        wait = throttle.hit(key)
        if wait is not None:
            for earlier, earlier_key in counts[:done]:
                earlier.release(earlier_key)
            return wait
    return None


def login_by_user_and_ip():
    return Throttle("login-user-ip", settings.LOGIN_ATTEMPTS_PER_USER_IP, settings.LOGIN_WINDOW)


def login_by_ip():
    return Throttle("login-ip", settings.LOGIN_ATTEMPTS_PER_IP, settings.LOGIN_WINDOW)


def login_by_user():
    return Throttle("login-user", settings.LOGIN_ATTEMPTS_PER_USER, settings.LOGIN_WINDOW)


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


# --- Log-in ----------------------------------------------------------------------


def login_attempt(username, address):
    """Count an attempt to log in as `username` (lower-cased) from `address`
    (client_ip): the seconds to wait if it is refused, else None. Three
    counts in LOGIN_WINDOW, so that failures elsewhere never lock a person out:

    - per username and address (LOGIN_ATTEMPTS_PER_USER_IP): guessing one
      person's password from one place;
    - per address (LOGIN_ATTEMPTS_PER_IP): one place trying many names;
    - per username from every address together (LOGIN_ATTEMPTS_PER_USER,
      much higher): many places guessing one person's password. Addresses the
      username logged in from in the last KNOWN_ADDRESS_DAYS skip this one,
      so even that attack leaves the owner able to log in where they usually do.

    A username with no account is counted the same, so the answers do not
    tell which names exist."""
    return hit_each(*_login_counts(username, address))


def login_succeeded(username, address):
    """Forgive the username's failures from this address, take back the
    attempt's other hits, and remember the address as one it logs in from."""
    (pair, pair_key), *others = _login_counts(username, address)
    pair.clear(pair_key)
    for throttle, key in others:
        throttle.release(key)
    cache.set(_cache_key("login-known", (username, address)), True, KNOWN_ADDRESS_DAYS * DAY)


def _login_counts(username, address):
    counts = [(login_by_user_and_ip(), (username, address)), (login_by_ip(), address)]
    if cache.get(_cache_key("login-known", (username, address))) is None:
        counts.append((login_by_user(), username))
    return counts


def arena_anonymous_votes():
    return Throttle("arena-anonymous-votes", settings.ARENA_ANONYMOUS_VOTES_PER_HOUR, HOUR)
