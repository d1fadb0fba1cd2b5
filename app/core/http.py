"""The one place outgoing HTTP is set up: timeouts, pooled connections."""

import threading

import httpx
from django.conf import settings

_local = threading.local()


def client():
    """A per-thread httpx client (connections are reused between calls)."""
    if getattr(_local, "client", None) is None:
        timeout = httpx.Timeout(settings.HTTP_TIMEOUT, connect=min(5.0, settings.HTTP_TIMEOUT))
        _local.client = httpx.Client(timeout=timeout, follow_redirects=False, headers={"User-Agent": "Lightbox/0.1"})
    return _local.client


def describe(exc):
    """A sentence a person can read for a transport failure."""
    if isinstance(exc, httpx.ConnectError):
        return "could not connect"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    return str(exc) or exc.__class__.__name__


class BadStatus(Exception):
    """A download answered something other than 200."""

    def __init__(self, status):
        super().__init__(f"answered {status}")
        self.status = status


class TooLarge(Exception):
    """A download went past its size limit (it was stopped there)."""


def download(client, url, max_bytes, timeout):
    """(bytes, content type) of `url`, following redirects, read in chunks and
    stopped past `max_bytes`. Raises BadStatus, TooLarge or httpx.HTTPError."""
    with client.stream("GET", url, follow_redirects=True, timeout=timeout) as response:
        if response.status_code != 200:
            raise BadStatus(response.status_code)
        chunks, size = [], 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > max_bytes:
                raise TooLarge(f"larger than {max_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks), response.headers.get("content-type", "").split(";")[0].strip()
