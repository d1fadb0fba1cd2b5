"""Inference backends, one module per protocol, behind the same functions:

    fetch_schema(location) -> (openapi_schema, cog_version)
    check(version)         -> reason it cannot run now, or "" when it can
    submit(prediction)     -> remote id; raises Busy or BackendError
    cancel(prediction)
    parse_update(payload)  -> Update

All outgoing HTTP goes through app.http.
"""

from dataclasses import dataclass
from typing import Any


@dataclass
class Update:
    """A backend's view of a prediction, whatever the protocol."""

    status: str | None = None
    output: Any = None
    logs: str | None = None
    error: str | None = None
    predict_time: float | None = None
    remote_id: str = ""


class BackendError(Exception):
    """A backend refused or failed. `permanent` says retrying will not help."""

    def __init__(self, message, permanent=False):
        super().__init__(message)
        self.permanent = permanent


class Busy(BackendError):
    """The backend has no free slot now; the prediction waits its turn."""


def for_version(version):
    return {"cog": cog, "replicate": replicate}[version.backend]


from app.backends import cog, replicate  # noqa: E402  (they import the names above)
