"""/v1's side of HTTP: reading a JSON body, and errors as RFC 7807 problems
(what Replicate answers, and what its official clients read)."""

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse
from django.views import defaults

from app.core import payloads


def problem(status, title, detail, **extra):
    """An RFC 7807 error response."""
    body = {"type": "about:blank", "title": title, "detail": detail, "status": status, **extra}
    return JsonResponse(body, status=status, content_type="application/problem+json")


def refused(exc):
    """The problem response for a limits.RunRefused."""
    response = problem(exc.status, exc.title, exc.detail)
    if exc.retry_after:
        response["Retry-After"] = str(exc.retry_after)
    return response


def invalid_input(errors):
    """422 with one entry per field, as Replicate reports invalid input."""
    fields = [{"field": field, "description": " ".join(messages)} for field, messages in errors.items()]
    detail = "; ".join(f"{f['field']}: {f['description']}" for f in fields)
    return problem(422, "Input validation failed", detail, invalid_fields=fields)


class BodyTooLarge(ValueError):
    pass


def parse_json_body(request):
    """The request's JSON object, or raise ValueError with a reason
    (BodyTooLarge past DATA_UPLOAD_MAX_MEMORY_SIZE; app.core.payloads.BadPayload
    for what is not JSON or nests too deep)."""
    try:
        raw = request.body
    except RequestDataTooBig:
        raise BodyTooLarge(
            f"The request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes "
            "(LIGHTBOX_MAX_REQUEST_BYTES); give large images as http(s) URLs."
        ) from None
    if not raw:
        return {}
    payload = payloads.loads(raw)
    if not isinstance(payload, dict):
        raise ValueError("The request body must be a JSON object.")
    return payload


# --- Django's error handlers (lightbox/urls.py): JSON under /v1, pages elsewhere ---


def _is_api(request):
    return request.path.startswith("/v1/") or request.path == "/v1"


def bad_request(request, exception):
    if _is_api(request):
        return problem(400, "Bad request", "The request could not be read.")
    return defaults.bad_request(request, exception)


def permission_denied(request, exception):
    if _is_api(request):
        return problem(403, "Forbidden", "You may not do this.")
    return defaults.permission_denied(request, exception)


def page_not_found(request, exception):
    if _is_api(request):
        return problem(404, "Not found", f"No endpoint at {request.path}.")
    return defaults.page_not_found(request, exception)


def server_error(request):
    if _is_api(request):
        return problem(500, "Internal server error", "Something went wrong on our side; it was logged.")
    return defaults.server_error(request)
