"""Inference backends, one module per protocol, behind the same functions:

    fetch_schema(location) -> (openapi_schema, cog_version)
    check(version)         -> reason it cannot run now, or "" when it can
    server_boot(prediction) -> which run of the server it runs on answers ("" if it
                              does not say, None if it does not answer), asked
                              before submit: a later change means it lost it
    submit(prediction)     -> remote id; raises Busy or BackendError
    cancel(prediction)
    parse_update(payload)  -> Update

All outgoing HTTP goes through app.core.http.
"""

import json
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
    # Why it failed, where Lightbox acts on the reason (Prediction.ErrorCode).
    error_code: str = ""


STATUSES = ("starting", "processing", "succeeded", "failed", "canceled")


def update_from_payload(payload, kind, extra_statuses=()):
    """The fields Cog and Replicate predictions share, as an Update (its error
    is each backend's to put in words)."""
    if not isinstance(payload, dict) or payload.get("status") not in STATUSES + extra_statuses:
        raise BackendError(f"The payload is not a {kind} prediction.", permanent=True)
    metrics = payload.get("metrics")
    output = payload.get("output")
    if output is not None and not isinstance(output, list):
        output = [output]
    return Update(
        status=payload["status"],
        output=output,
        logs=payload["logs"] if isinstance(payload.get("logs"), str) else None,
        predict_time=metrics.get("predict_time") if isinstance(metrics, dict) else None,
        remote_id=str(payload.get("id") or ""),
    )


def json_body(body):
    """The JSON bytes a backend is sent. What cannot be written (only a row
    stored before inputs were checked at the edge holds such a value) is a
    permanent BackendError, so the prediction fails and says why instead of
    staying "starting" while the task crashes on every retry."""
    try:
        return json.dumps(body, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except UnicodeEncodeError:
        reason = "it has text that is not valid Unicode"
    except ValueError:
        reason = "it has a number JSON cannot carry (NaN or Infinity)"
    except (TypeError, RecursionError) as exc:
        reason = f"it is not plain JSON ({exc.__class__.__name__})"
    raise BackendError(f"The input could not be sent to the model: {reason}.", permanent=True)


class BackendError(Exception):
    """A backend refused or failed. `permanent` says retrying will not help."""

    def __init__(self, message, permanent=False):
        super().__init__(message)
        self.permanent = permanent


class Busy(BackendError):
    """The backend has no free slot now; the prediction waits its turn."""


def for_version(version):
    return {"cog": cog, "replicate": replicate}[version.backend]


from app.services.backends import cog, replicate  # noqa: E402  (they import the names above)
