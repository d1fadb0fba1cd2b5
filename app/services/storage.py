"""Copy a prediction's outputs into our storage, at once and exactly once.

Outputs arrive as data: URIs, as files a Cog server uploaded to us
(--upload-url), or as URLs to download (Replicate deletes its copies after an
hour). Each is stored with the generation parameters embedded (PNG), a WebP
thumbnail, its size and content hash.
"""

import functools
import hashlib
import json
import re
import time
from urllib.parse import quote, urlsplit

import httpx
from django.conf import settings
from django.core import signing
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, default_storage
from django.db import IntegrityError, transaction
from django.urls import get_script_prefix, reverse
from django.utils.http import RFC3986_SUBDELIMS

from app.core import http, images, payloads
from app.core.logs import nsfw_flags
from app.models import Output, Upload
from app.services.backends import BackendError

UPLOAD_PATH_RE = re.compile(r"/hooks/cog/uploads/(?P<token>[^/]+)/(?P<id>[a-z0-9]+)/")
UPLOAD_SIGNER_SALT = "cog-upload"

# What this site stores (a model's outputs, a Cog server's uploads) and serves
# from its own origin, told by the bytes, never by a file name or a header: an
# HTML, SVG or script file served from here would run as this site (CSP
# script-src 'self'). Images are shown inline; JSON, the plain data a model may
# return as a file, goes out as a sandboxed download (app.views.media). A model
# that returns text returns a string, which Cog sends inside its output.
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "GIF")
EXTENSIONS = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/webp": "webp",
    "image/gif": "gif",
    "application/json": "json",
}
INLINE_TYPES = frozenset(("image/png", "image/jpeg", "image/webp", "image/gif"))
STORED_KINDS = "PNG, JPEG, WEBP, GIF or JSON"


class RefusedFile(ValueError):
    """A file of a kind this site does not store."""


def stored_type(data):
    """The content type `data` is stored and served as, from its content alone;
    raises RefusedFile for anything else, or an image that does not decode."""
    try:
        content_type = images.inspect(data, formats=IMAGE_FORMATS, decode=True)[2]
    except ValueError:
        pass
    else:
        if content_type in INLINE_TYPES:  # not a variant Pillow names apart (MPO)
            return content_type
    try:
        json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise RefusedFile(f"The file is not a {STORED_KINDS} file (told by its content).") from None
    return "application/json"


def _server(location):
    return location.rstrip("/")


def upload_token(location):
    """The token in the --upload-url of the Cog server at `location` (its
    versions' location). It names the server, so one server's token cannot put
    a file into another server's predictions (upload_for)."""
    return signing.Signer(salt=UPLOAD_SIGNER_SALT).sign_object(_server(location))


def upload_server(token):
    """The location of the Cog server `token` was given to, or None."""
    try:
        server = signing.Signer(salt=UPLOAD_SIGNER_SALT).unsign_object(token)
    except signing.BadSignature:
        return None
    return server if isinstance(server, str) else None


def upload_url(location):
    """The --upload-url Lightbox gives the Cog server at `location`."""
    return f"{settings.SITE_URL}/hooks/cog/uploads/{upload_token(location)}/"


def store_outputs(prediction, output, logs=None):
    """Store every file of `output` (a list) that is not stored yet. Outputs
    the model's safety checker flagged in `logs` are rated nsfw
    (app.core.logs.nsfw_flags)."""
    flags = nsfw_flags(logs)
    stored = set(prediction.outputs.values_list("index", flat=True))
    # Every output is fetched and checked before any is stored: one of a kind
    # we refuse fails the prediction with nothing half-kept.
    checked = []
    for index, item in enumerate(output or []):
        if index in stored or not isinstance(item, str):
            continue
        data = fetch(item, prediction.version)
        try:
            checked.append((index, item, data, stored_type(data)))
        except RefusedFile as exc:
            raise BackendError(f"Output {index}: {exc}", permanent=True) from exc
    for index, item, data, content_type in checked:
        nsfw = index < len(flags) and flags[index]
        _save_output(prediction, index, data, content_type, Output.Rating.NSFW if nsfw else Output.Rating.SAFE)
        _discard_upload(item, prediction.version)


def fetch(item, version):
    """The bytes of one output of `version`: a data: URI, an upload of its own
    Cog server, or a URL."""
    if item.startswith("data:"):
        return _decode_data_uri(item)
    match = _upload_match(item)
    if match and upload_server(match["token"]) != _server(version.location):
        raise BackendError("An output names a file uploaded by another model server.", permanent=True)
    upload = upload_for(item, version)
    if upload is not None:
        with upload.file.open("rb") as fh:
            return fh.read()
    if urlsplit(item).scheme not in ("http", "https"):
        raise BackendError(f"Output {item[:80]!r} is neither a URL nor a data URI.", permanent=True)
    try:
        data, _ = http.download(http.client(), item, settings.UPLOAD_MAX_BYTES, timeout=60)
    except http.BadStatus as exc:
        raise BackendError(f"Downloading an output answered {exc.status}.") from exc
    except http.TooLarge as exc:
        raise BackendError("An output is larger than LIGHTBOX_UPLOAD_MAX_BYTES.", permanent=True) from exc
    except httpx.HTTPError as exc:
        raise BackendError(f"Downloading an output {http.describe(exc)}.") from exc
    return data


def _decode_data_uri(uri):
    """The bytes of a data: URI; its declared type is not believed (stored_type)."""
    try:
        data, _ = payloads.decode_data_uri(uri)
    except ValueError as exc:
        raise BackendError("An output data URI is not valid base64.", permanent=True) from exc
    return data


def _upload_match(url):
    try:
        return UPLOAD_PATH_RE.search(urlsplit(url).path)
    except ValueError:  # not a URL urlsplit can read (a bad IPv6 host)
        return None


def upload_for(url, version):
    """The Upload a URL names, if it is one of ours that `version`'s own Cog
    server uploaded and it is still here."""
    match = _upload_match(url)
    server = _server(version.location)
    if not match or upload_server(match["token"]) != server:
        return None
    return Upload.objects.filter(pk=match["id"], server=server).first()


def _discard_upload(item, version):
    upload = upload_for(item, version) if not item.startswith("data:") else None
    if upload is not None:
        upload.file.delete(save=False)
        upload.delete()


def discard_uploads(prediction):
    """Delete what a Cog server uploaded for a prediction that has ended and
    no output took: a run whose completed webhook was lost (the prediction ran
    again and stored the next run's files), or a run that finished after the
    prediction had ended. Cog names the prediction in each upload."""
    ids = {prediction.id, prediction.remote_id} - {""}
    for upload in Upload.objects.filter(remote_prediction_id__in=ids):
        upload.file.delete(save=False)
        upload.delete()


def _save_output(prediction, index, data, content_type, rating=Output.Rating.SAFE):
    """Store one output whose content type stored_type() gave."""
    output = Output(prediction=prediction, index=index, content_type=content_type, rating=rating)
    files = {}
    if content_type in INLINE_TYPES:
        output.width, output.height, _ = images.inspect(data)
        if content_type == "image/png":
            data = images.embed_png_metadata(data, images.parameters_chunks(prediction))
        files["thumbnail"] = (f"{index}.thumb.webp", images.thumbnail(data))
        if rating == Output.Rating.NSFW:
            files["blurred_thumbnail"] = (f"{index}.blurred.webp", images.blurred_thumbnail(data))
    files["file"] = (f"{index}.{EXTENSIONS[content_type]}", data)
    output.sha256 = hashlib.sha256(data).hexdigest()
    for field, (name, content) in files.items():
        getattr(output, field).save(name, ContentFile(content), save=False)
    try:
        with transaction.atomic():
            output.save()
    except IntegrityError:
        # Another webhook delivery stored this output first; drop our copy.
        for field_file in output.stored_files():
            field_file.delete(save=False)


def save_blurred_thumbnail(output):
    """Make the blurred thumbnail of a stored output (not saved to the row)."""
    if output.blurred_thumbnail or not output.file:
        return
    with output.file.open("rb") as fh:
        data = fh.read()
    try:
        blurred = images.blurred_thumbnail(data)
    except Exception:  # not an image Pillow reads: nothing to show, blurred or not
        return
    output.blurred_thumbnail.save(f"{output.index}.blurred.webp", ContentFile(blurred), save=False)


# --- Media URLs ----------------------------------------------------------------------
# Media of items that are not public to everyone is served through a
# permission check (app.views.media). A signed URL stands in for a session for
# one file: the API hands them to clients that have none (Replicate's clients
# download the outputs from the URLs in the prediction), valid MEDIA_URL_TTL
# seconds, as Replicate's own output URLs are.
#
# Each signed URL names the user it was issued to, and is served only while
# that user may still see the file, by the same rule as their session
# (Moderated.access_for, Output.shows_explicit_to). So making an item private,
# hiding it, or rating it nsfw revokes the links others hold at once, while its
# owner's API client keeps fetching its own private images. (Binding the URL
# to the item's state instead would also revoke it, but could not tell an nsfw
# image's owner from a viewer who did not opt in, and would break the owner's
# own links at every change.) The check costs what the session path costs:
# the output's row is read for every media request anyway.
# With object storage (S3), the storage's own expiring presigned URLs play
# that part and cannot be revoked early: keep the bucket private and the TTL short.

MEDIA_SIGNER_SALT = "lightbox-media"
ANONYMOUS_HOLDER = 0  # user pks start at 1


def signed_url(field_file, holder, now=None):
    """A URL of a stored file that works without a session until it expires,
    for as long as `holder` (a user, or AnonymousUser; the pk of one) may see it."""
    if not isinstance(default_storage, FileSystemStorage):
        return field_file.url
    holder = getattr(holder, "pk", holder) or ANONYMOUS_HOLDER
    # Expiry rounded up to ten minutes, so the same file keeps one URL for a
    # while and browsers can cache it.
    expires = (int((now or time.time()) + settings.MEDIA_URL_TTL) // 600 + 1) * 600
    signature = signing.Signer(salt=MEDIA_SIGNER_SALT).signature(f"{field_file.name}|{expires}|{holder}")
    return (
        f"{_signed_media_prefix(get_script_prefix())}{expires}.{holder}.{signature}/"
        f"{quote(field_file.name, safe=RFC3986_SUBDELIMS + '/~:@')}"
    )


@functools.cache
def _signed_media_prefix(script_prefix):
    """The path before the token of every signed media URL ("/files/"): reverse()
    costs ~40 us, and a page of the API's list has a hundred of these URLs."""
    return reverse("signed-media", args=["token", "outputs/file"]).removesuffix("token/outputs/file")


def signed_path_holder(token, path, now=None):
    """The pk of the user `token` ("<expires>.<holder>.<signature>") was issued
    to (ANONYMOUS_HOLDER: nobody signed in) if it is valid for `path` now;
    None if it is forged, expired or for another path."""
    expires, _, rest = token.partition(".")
    holder, _, signature = rest.partition(".")
    # Plain ASCII digits of a sane length: int() refuses "²" and 5,000 digits.
    if not all(part.isascii() and part.isdigit() and len(part) <= 20 for part in (expires, holder)):
        return None
    if int(expires) < (now or time.time()):
        return None
    # unsign, not a compare with signature(): it also accepts the links signed
    # with SECRET_KEY_FALLBACKS, which keep working through a key rotation.
    value = f"{path}|{expires}|{holder}"
    try:
        valid = signing.Signer(salt=MEDIA_SIGNER_SALT).unsign(f"{value}:{signature}") == value
    except signing.BadSignature:
        return None
    return int(holder) if valid else None


def mark_nsfw(output):
    """Rate `output` nsfw and make its blurred thumbnail; False if it was not safe."""
    if output.rating != Output.Rating.SAFE:
        return False
    save_blurred_thumbnail(output)
    output.rating = Output.Rating.NSFW
    output.save(update_fields=["rating", "blurred_thumbnail"])
    return True
