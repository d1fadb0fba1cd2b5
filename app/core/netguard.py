"""Outbound requests to addresses users chose: callers' webhooks and image URLs
a model will read. Lightbox runs next to its model servers, its database and
often a LAN, so such a URL must not reach a private, loopback, link-local or
otherwise non-public address (SSRF).

Checked after DNS, on every connection: the guarded client resolves each
host itself, refuses it when any address is not public, and connects to the
address it checked, so a DNS answer that changes between check and use
(rebinding) or a redirect to an inside address gets nowhere. Hosts, addresses
and networks in LIGHTBOX_NETWORK_ALLOWLIST (comma separated: "nas.lan",
"192.168.1.0/24", "127.0.0.1") are allowed anyway, for LAN services and the
test suite.

Only http(s) (and data: URIs, which need no fetch) go to a backend. Image URLs
given to one of our Cog servers are fetched here, through the guard, and
handed to it as data: URIs (app.core.uploads.inline_urls), so the model server never follows
a user's URL itself; Replicate fetches in its own cloud, so for Replicate
versions the URL is checked when the prediction is created. Text inputs that
name a file to download (a LoRA: app.core.schema.url_inputs) are too big to inline:
they are checked here when the prediction is created and again when it is sent,
and our model server checks them once more when it connects (inference/weights.py).

What a user is told about a refused or failed request is only "Could not fetch
<field>.": whether the name resolved, was private, the port open or closed, the
request refused or timed out would map the network behind Lightbox. The reason
goes to the server log.
"""

import ipaddress
import logging
import re
import socket
import threading
from functools import lru_cache
from urllib.parse import urlsplit

import httpcore
import httpx
from django.conf import settings

from app.core import http
from app.core.schema import InputError, is_file_input, url_inputs

log = logging.getLogger(__name__)
_local = threading.local()
MAX_REDIRECTS = 5
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
# A file on the model server's disk rather than a name it looks up.
_SERVER_PATH = re.compile(r"^[/\\~.]|(^|[/\\])\.\.([/\\]|$)")


class UnsafeURL(ValueError):
    """A URL Lightbox will not request or could not fetch. str() is the reason,
    for the server log only; users see `message(field)`: `public` when the
    reason is theirs to fix and says nothing about the network (a scheme, a
    file too large), else "Could not fetch <field>."."""

    def __init__(self, detail, public=None):
        super().__init__(detail)
        self.public = public

    def message(self, field):
        return self.public or f"Could not fetch {field}."


def refusal(field, exc):
    """What a user is told about `exc` on `field`; the reason is logged."""
    log.info("refused %s: %s", field, exc)
    return exc.message(field)


@lru_cache(maxsize=8)
def _allowlist(raw):
    hosts, networks = set(), []
    for entry in (item.strip().lower() for item in raw.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
        except ValueError:
            hosts.add(entry)
    return frozenset(hosts), tuple(networks)


def _allowed_host(host):
    hosts, _ = _allowlist(settings.NETWORK_ALLOWLIST)
    return host.lower().rstrip(".") in hosts


def _public(address):
    ip = ipaddress.ip_address(address.split("%")[0])
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    _, networks = _allowlist(settings.NETWORK_ALLOWLIST)
    if any(ip in network for network in networks):
        return True
    return ip.is_global and not ip.is_multicast


def resolve(host, port=443):
    """The addresses `host` connects to, after DNS; UnsafeURL unless all are public
    (or allowed). Allowed host names are not looked up here."""
    host = host.strip("[]")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError) as exc:  # ValueError: a NUL in the name
        raise UnsafeURL(f"The host {host!r} could not be found.") from exc
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if _allowed_host(host):
        return addresses
    blocked = [address for address in addresses if not _public(address)]
    if blocked or not addresses:
        raise UnsafeURL(
            f"{host} resolves to a private or local address ({blocked[0] if blocked else 'none'}); "
            "Lightbox does not send requests there."
        )
    return addresses


def check_url(url):
    """Raise UnsafeURL unless `url` is http(s) to a public host."""
    if not isinstance(url, str):
        raise UnsafeURL("not a string", public="Give an http(s) URL.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeURL(f"{url[:100]!r} is not a valid URL", public="The URL is not valid.") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeURL(f"{url[:100]!r} is not an http(s) URL", public="Give an http(s) URL.")
    resolve(parts.hostname, port or (443 if parts.scheme == "https" else 80))


# --- The guarded HTTP client ---------------------------------------------------------


class _GuardedBackend(httpcore.SyncBackend):
    """Resolves and checks every host httpx connects to, and connects to the
    address it checked."""

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        try:
            addresses = resolve(host, port)
        except UnsafeURL as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        last = None
        for address in addresses:
            try:
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                last = exc
        raise last


class GuardedTransport(httpx.HTTPTransport):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # httpx has no argument for httpcore's network backend; its pool does.
        self._pool._network_backend = _GuardedBackend()


def client():
    """A per-thread httpx client that only reaches public addresses (no proxies
    from the environment, no redirects unless asked per request)."""
    if getattr(_local, "client", None) is None:
        timeout = httpx.Timeout(settings.HTTP_TIMEOUT, connect=min(5.0, settings.HTTP_TIMEOUT))
        _local.client = httpx.Client(
            transport=GuardedTransport(),
            timeout=timeout,
            follow_redirects=False,
            trust_env=False,
            max_redirects=MAX_REDIRECTS,
            headers={"User-Agent": "Lightbox/0.1"},
        )
    return _local.client


def fetch(url, max_bytes):
    """(bytes, content type) of `url`, following redirects, each hop checked."""
    check_url(url)
    try:
        return http.download(client(), url, max_bytes, timeout=30)
    except http.BadStatus as exc:
        raise UnsafeURL(f"Fetching {url[:100]} answered {exc.status}.") from exc
    except http.TooLarge as exc:
        raise UnsafeURL(
            f"The file at {url[:100]} is larger than {max_bytes} bytes.",
            public=f"The file is larger than {max_bytes} bytes.",
        ) from exc
    except httpx.HTTPError as exc:
        raise UnsafeURL(f"Fetching {url[:100]} failed: {exc}") from exc


# --- Prediction inputs ---------------------------------------------------------------


def url_fields(version, data):
    """(field, index or None, value, is a file) of every URL or name in `data`
    that a backend would fetch (app.core.schema.url_inputs)."""
    for name, spec in url_inputs(version).items():
        value, is_file = data.get(name), is_file_input(spec)
        if isinstance(value, str):
            yield name, None, value, is_file
        elif isinstance(value, list) and spec.get("type") == "array":
            for index, item in enumerate(value):
                if isinstance(item, str):
                    yield name, index, item, is_file


def uri_fields(version, data):
    """(field, index or None, value) of every file input (format uri) in `data`."""
    for name, index, value, is_file in url_fields(version, data):
        if is_file:
            yield name, index, value


def is_http(value):
    return value.startswith(("http://", "https://"))


def check_input_urls(version, cleaned):
    """Refuse, per field, what a backend must not fetch: files given as anything
    but http(s) or data:, text inputs that name another scheme or a path on the
    server, and http(s) URLs of private or local hosts."""
    errors = {}
    for name, _, value, is_file in url_fields(version, cleaned):
        if is_file and value.startswith("data:"):
            continue
        if is_file and not is_http(value):
            message = "Give an http(s) URL or a data: URI."
        elif not is_file and not is_http(value):
            if not (_SCHEME.match(value) or _SERVER_PATH.search(value)):
                continue  # a name the model server looks up, as a LoRA in its LORA_DIR
            message = "Give an http(s) URL or a name."
        else:
            try:
                check_url(value)
                continue
            except UnsafeURL as exc:
                message = refusal(name, exc)
        if message not in errors.get(name, []):
            errors.setdefault(name, []).append(message)
    if errors:
        raise InputError(errors)
