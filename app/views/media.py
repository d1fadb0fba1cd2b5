"""Stored outputs, served through a permission check.

Anyone may fetch the images of a public or unlisted prediction that is not
hidden (their paths carry the prediction's 128-bit id, which is the share
capability, like its page). Private and hidden predictions' images go only to
the owner and moderators, or to whoever holds a signed URL (the API gives
those to the owner: app.services.storage.signed_url). An nsfw image itself goes only to
those who may see it unblurred (Output.shows_explicit_to); its blurred
thumbnail to anyone who may see the item. Blocked images are gone.
"""

from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpResponse
from django.views.decorators.http import require_GET

from app.models import Output
from app.services import storage


@require_GET
def serve_media(request, path):
    """A stored file, for whoever may see it (the session's user)."""
    return _serve(request, path, signed=False)


@require_GET
def serve_signed_media(request, token, path):
    """A stored file by a signed, expiring URL: the signature is the permission."""
    if not storage.check_signed_path(token, path):
        return HttpResponse("This link has expired or is not valid.", status=403, content_type="text/plain")
    return _serve(request, path, signed=True)


def _serve(request, path, signed):
    if not path.startswith("outputs/") or ".." in path.split("/"):
        raise Http404
    output, kind = _output_for(path)
    if output is None:
        raise Http404
    if not signed:
        refusal = _refusal(request.user, output, kind)
        if refusal:
            return refusal
    try:
        handle = default_storage.open(path, "rb")
    except (FileNotFoundError, OSError):
        raise Http404
    response = file_response(handle, output.content_type if kind == "file" else "image/webp")
    if signed or not _open_to_everyone(output, kind):
        response["Cache-Control"] = "private, max-age=600"
        response["Vary"] = "Cookie"
    else:
        response["Cache-Control"] = "private, max-age=31536000, immutable"
    return response


def _output_for(path):
    """The output a stored path belongs to, and which of its files it is.
    Paths are outputs/<2 chars>/<prediction id>/<file> (output_upload_to)."""
    parts = path.split("/")
    if len(parts) != 4:
        return None, None
    for output in Output.objects.select_related("prediction").filter(prediction_id=parts[2]):
        for kind, field in (("file", output.file), ("thumbnail", output.thumbnail),
                            ("blurred", output.blurred_thumbnail)):
            if field and field.name == path:
                return output, kind
    return None, None


def _refusal(user, output, kind):
    prediction = output.prediction
    if not prediction.can_be_seen_by(user):
        if prediction.is_hidden and prediction.visibility != "private":
            return HttpResponse("This image was hidden by moderators.", status=410, content_type="text/plain")
        raise Http404
    if output.rating == Output.Rating.BLOCKED:
        return HttpResponse("This image was removed.", status=410, content_type="text/plain")
    if kind != "blurred" and not output.shows_explicit_to(user):
        return HttpResponse(
            "This image is rated NSFW. Sign in and opt in to see it.", status=403, content_type="text/plain"
        )
    return None


def _open_to_everyone(output, kind):
    prediction = output.prediction
    return (
        prediction.visibility != "private"
        and not prediction.is_hidden
        and (output.rating == Output.Rating.SAFE or kind == "blurred")
    )


def file_response(handle, content_type):
    """A stored file as it may go out from this site's origin: an image inline,
    anything else as a download the browser neither renders, sniffs nor runs.
    `content_type` is what app.services.storage.stored_type found when it was stored; a
    row stored before types were checked is not believed."""
    if content_type not in storage.EXTENSIONS:
        content_type = "application/octet-stream"
    inline = content_type in storage.INLINE_TYPES
    response = FileResponse(handle, content_type=content_type, as_attachment=not inline)
    if not inline:
        response["Content-Security-Policy"] = "sandbox; default-src 'none'"
    response["X-Content-Type-Options"] = "nosniff"
    return response
