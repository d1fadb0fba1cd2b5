"""How a stored file goes out from this site's origin (media and Cog uploads)."""

from django.http import FileResponse

from app.services import storage


def file_response(handle, content_type, download_as=None):
    """A stored file as it may go out from this site's origin: an image inline,
    anything else as a download the browser neither renders, sniffs nor runs.
    `content_type` is what app.services.storage.stored_type found when it was stored; a
    row stored before types were checked is not believed. `download_as`: a
    download under this name, whatever it is."""
    if content_type not in storage.EXTENSIONS:
        content_type = "application/octet-stream"
    inline = content_type in storage.INLINE_TYPES and not download_as
    response = FileResponse(handle, content_type=content_type, as_attachment=not inline, filename=download_as or "")
    if not inline:
        response["Content-Security-Policy"] = "sandbox; default-src 'none'"
    response["X-Content-Type-Options"] = "nosniff"
    return response
