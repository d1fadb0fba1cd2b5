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
