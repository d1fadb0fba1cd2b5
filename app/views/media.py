"""Stored outputs. Their paths carry the prediction's 128-bit id, which is the
share capability, like the prediction's own page."""

import mimetypes

from django.core.files.storage import default_storage
from django.http import FileResponse, Http404
from django.views.decorators.http import require_GET


@require_GET
def serve_media(request, path):
    if not path.startswith("outputs/") or ".." in path.split("/"):
        raise Http404
    try:
        handle = default_storage.open(path, "rb")
    except (FileNotFoundError, OSError):
        raise Http404
    response = FileResponse(handle, content_type=mimetypes.guess_type(path)[0] or "application/octet-stream")
    response["Cache-Control"] = "private, max-age=31536000, immutable"
    return response
