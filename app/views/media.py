"""Stored outputs, served through a permission check.

Anyone may fetch the images of a public or unlisted prediction that is not
hidden (their paths carry the prediction's 128-bit id, which is the share
capability, like its page). Private and hidden predictions' images go only to
the owner and moderators. An nsfw image itself goes only to those who may see
it unblurred (Output.shows_explicit_to); its blurred thumbnail to anyone who
may see the item. Blocked images are gone. A signed URL (app.services.storage.signed_url)
gets what the user it was issued to would get with their session, checked now.
"""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.core.files.storage import default_storage
from django.http import Http404, HttpResponse
from django.views.decorators.http import require_GET

from app.core import images
from app.models import Access, Output
from app.services import storage
from app.views.files import file_response


@require_GET
def serve_media(request, path):
    """A stored file, for whoever may see it (the session's user)."""
    return _serve(request, path)


@require_GET
def serve_signed_media(request, token, path):
    """A stored file by a signed, expiring URL, for as long as the user it was
    issued to may see it (not the session's: the URL is for clients without one)."""
    holder = storage.signed_path_holder(token, path)
    if holder is None:
        return _invalid_link()
    return _serve(request, path, holder=holder)


def _invalid_link():
    return HttpResponse("This link has expired or is not valid.", status=403, content_type="text/plain")


def _serve(request, path, holder=None):
    """`holder`: the pk of the user a signed URL was issued to; None: the session's user."""
    signed = holder is not None
    if not path.startswith("outputs/") or ".." in path.split("/"):
        raise Http404
    output, kind = _output_for(path, with_owner=signed)
    if output is None:
        raise Http404
    viewer = _holder(holder, output, kind) if signed else request.user
    if viewer is None:
        return _invalid_link()
    refusal = _refusal(viewer, output, kind)
    if refusal:
        return refusal
    try:
        handle = default_storage.open(path, "rb")
    except (FileNotFoundError, OSError):
        raise Http404
    content_type = output.content_type if kind == "file" else "image/webp"
    response = file_response(handle, content_type, _download_name(output, kind, content_type))
    if signed or not _open_to_everyone(output, kind):
        response["Cache-Control"] = "private, max-age=600"
        response["Vary"] = "Cookie"
    else:
        response["Cache-Control"] = "private, max-age=31536000, immutable"
    return response


def _download_name(output, kind, content_type):
    """What the file is saved as, from a page's link or the API's URL alike."""
    prediction = output.prediction
    return images.download_name(
        prediction.version.model.name,
        prediction.input.get("prompt", ""),
        prediction.input.get("seed"),
        output.index,
        storage.EXTENSIONS.get(content_type, "bin"),
        kind="" if kind == "file" else kind,
    )


def _output_for(path, with_owner=False):
    """The output a stored path belongs to, and which of its files it is.
    Paths are outputs/<2 chars>/<prediction id>/<file> (output_upload_to).
    `with_owner` for signed URLs: most are the owner's client's (_holder)."""
    parts = path.split("/")
    if len(parts) != 4:
        return None, None
    # The model comes along for the download name (one query all the same).
    related = ["prediction__version__model", *(["prediction__owner"] if with_owner else [])]
    outputs = Output.objects.select_related(*related).defer("prediction__logs", "prediction__version__openapi_schema")
    for output in outputs.filter(prediction_id=parts[2]):
        for kind, field in (
            ("file", output.file),
            ("thumbnail", output.thumbnail),
            ("blurred", output.blurred_thumbnail),
        ):
            if field and field.name == path:
                return output, kind
    return None, None


def _holder(pk, output, kind):
    """The user a signed URL was issued to, as their session would have them;
    None once their account is gone or deactivated. Looked up only when it
    matters, and the owner comes with the output (_output_for): a media
    request stays one query for what anyone may fetch and for the owner's
    client, which hold most signed URLs."""
    if pk == storage.ANONYMOUS_HOLDER or _open_to_everyone(output, kind):
        return AnonymousUser()
    prediction = output.prediction
    user = prediction.owner if pk == prediction.owner_id else get_user_model().objects.filter(pk=pk).first()
    return user if user is not None and user.is_active else None


def _refusal(user, output, kind):
    access = output.prediction.access_for(user)
    if access == Access.HIDDEN:
        return HttpResponse("This image was hidden by moderators.", status=410, content_type="text/plain")
    if access == Access.PRIVATE:
        raise Http404
    if output.rating == Output.Rating.BLOCKED:
        return HttpResponse("This image was removed.", status=410, content_type="text/plain")
    if kind != "blurred" and not output.shows_explicit_to(user):
        return HttpResponse(
            "This image is rated NSFW. Sign in and opt in to see it.", status=403, content_type="text/plain"
        )
    return None


def _open_to_everyone(output, kind):
    return output.prediction.is_open_to_everyone and (output.rating == Output.Rating.SAFE or kind == "blurred")
