"""Copy a prediction's outputs into our storage, at once and exactly once.

Outputs arrive as data: URIs, as files a Cog server uploaded to us
(--upload-url), or as URLs to download (Replicate deletes its copies after an
hour). Each is stored with the generation parameters embedded (PNG), a WebP
thumbnail, its size and content hash.

No file is visible under its name before its row exists (_staged), and a Cog
server's upload is kept in the local spool (app.core.spool) before anything
else is asked to take it: a database or a storage that is down loses no file
and leaves none behind. What a dead process still left is swept once a day
old (sweep_orphans).
"""

import contextlib
import functools
import hashlib
import io
import json
import logging
import os
import re
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, urlsplit

import httpx
from django.conf import settings
from django.core import signing
from django.core.cache import cache
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, default_storage, storages
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import Q
from django.urls import get_script_prefix, reverse
from django.utils import timezone
from django.utils.http import RFC3986_SUBDELIMS

from app.core import http, images, payloads, spool
from app.core.logs import nsfw_flags
from app.models import Output, Prediction, Upload, new_id
from app.services.backends import BackendError

log = logging.getLogger(__name__)

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


class NotStored(BackendError):
    """Outputs that reached us could not be stored (a full disk, storage
    down); none of them was kept. Retrying the same delivery would fail alike."""

    def __init__(self, message):
        super().__init__(message, permanent=True)


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
    (app.core.logs.nsfw_flags). Raises BackendError; NotStored when storage
    failed, and then none of the outputs this call stored is kept."""
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
    saved = []
    try:
        for index, item, data, content_type in checked:
            nsfw = index < len(flags) and flags[index]
            rating = Output.Rating.NSFW if nsfw else Output.Rating.SAFE
            if _save_output(prediction, index, data, content_type, rating):
                saved.append(index)
    except DatabaseError:
        raise  # not storage: the webhook is answered 500 and comes again
    except Exception as exc:  # OSError, or an object storage's own errors
        note_disk_full(exc)
        _delete_outputs(prediction.outputs.filter(index__in=saved))
        raise NotStored(_describe(exc)) from exc
    for _, item, _, _ in checked:
        _discard_upload(item, prediction.version)


def _describe(exc):
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror + (" (the disk is full)" if spool.is_disk_full(exc) else "")
    return str(exc) or exc.__class__.__name__


def _delete_outputs(outputs):
    for output in outputs:
        for field_file in output.stored_files():
            with contextlib.suppress(Exception):  # a file it never got
                field_file.delete(save=False)
        output.delete()


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
        try:
            with upload.file.open("rb") as fh:
                return fh.read()
        except OSError as exc:
            raise BackendError(f"An uploaded output could not be read ({_describe(exc)}).", permanent=True) from exc
    spooled = _spooled(match["id"], version.location) if match else None
    if spooled is not None:
        return spooled[1]  # received, but not yet recorded (storage down)
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
    server uploaded and it is still here (recorded now if it was still in the
    spool)."""
    match = _upload_match(url)
    server = _server(version.location)
    if not match or upload_server(match["token"]) != server:
        return None
    record_spooled(match["id"])
    return Upload.objects.filter(pk=match["id"], server=server).first()


def is_upload(url, version):
    """Whether `url` names an upload of `version`'s server that we have,
    recorded or still in the spool (so nothing needs downloading)."""
    match = _upload_match(url)
    if upload_for(url, version) is not None:
        return True
    return match is not None and _spooled(match["id"], version.location) is not None


def _discard_upload(item, version):
    if item.startswith("data:"):
        return
    upload = upload_for(item, version)
    if upload is not None:
        upload.file.delete(save=False)
        upload.delete()
    match = _upload_match(item)
    if match and _spooled(match["id"], version.location, with_data=False):
        spool.remove(settings.SPOOL_DIR, match["id"])


def discard_uploads(prediction):
    """Delete what a Cog server uploaded for a prediction that has ended and
    no output took: a run whose completed webhook was lost (the prediction ran
    again and stored the next run's files), or a run that finished after the
    prediction had ended. Cog names the prediction in each upload."""
    ids = {prediction.id, prediction.remote_id} - {""}
    for upload in Upload.objects.filter(remote_prediction_id__in=ids):
        upload.file.delete(save=False)
        upload.delete()
    for name in spool.names(settings.SPOOL_DIR):
        entry = spool.read(settings.SPOOL_DIR, name, with_data=False)
        if entry and entry[0].get("remote_prediction_id") in ids:
            spool.remove(settings.SPOOL_DIR, name)


# --- Receiving uploads -----------------------------------------------------------
# A Cog server uploads each output once and fails the prediction if that
# upload fails. So the bytes go to the spool on this machine's disk first
# (fsynced), and only then is the row recorded and the file published into
# storage; if the database or storage is down, the upload is still accepted,
# and recorded later: by the next upload, by the completed webhook that names
# it, or by the reconciler (drain_spool).


def receive_upload(server, remote_prediction_id, filename, content_type, data):
    """Keep a Cog server's upload, whatever else is down; its id. Raises
    OSError only when the bytes could not be kept (app.core.spool.is_disk_full
    tells a full disk)."""
    upload_id = new_id()
    meta = {
        "server": server,
        "remote_prediction_id": remote_prediction_id,
        "filename": filename,
        "content_type": content_type,
        "received_at": time.time(),
    }
    try:
        spool.write(settings.SPOOL_DIR, upload_id, meta, data)
    except OSError as exc:
        note_disk_full(exc)
        raise
    if _record(upload_id, meta, data):  # its prediction is running: no need to ask
        drain_spool()  # what an outage left there, now that it works again
    return upload_id


def record_spooled(upload_id):
    """Record the spooled upload `upload_id` (_record), or drop it if its
    prediction has ended meanwhile. False, and it stays in the spool for the
    next try, when the database or storage cannot take it now (or when it is
    not in the spool)."""
    entry = spool.read(settings.SPOOL_DIR, upload_id)
    if entry is None:
        return False
    try:
        ended = _ended(entry[0]["remote_prediction_id"])
    except DatabaseError as exc:
        log.warning("upload %s stays in the spool for now: %s", upload_id, exc)
        return False
    if ended:
        # No prediction will take it now (apply_update discards a late run's files).
        spool.remove(settings.SPOOL_DIR, upload_id)
        return True
    return _record(upload_id, *entry)


def _record(upload_id, meta, data):
    """Save the Upload row of a spooled upload and publish its file into
    storage, in one transaction; then it leaves the spool. False when the
    database or storage cannot take it now."""
    upload = Upload(
        id=upload_id,
        server=meta["server"],
        remote_prediction_id=meta["remote_prediction_id"],
        content_type=meta["content_type"],
        created_at=datetime.fromtimestamp(meta["received_at"], tz=UTC),
    )
    upload.file.name = upload.file.field.generate_filename(upload, f"{upload_id}-{meta['filename']}")
    try:
        with _staged({upload.file.name: data}) as publish, transaction.atomic():
            upload.save(force_insert=True)
            publish()
    except IntegrityError:
        # Another process draining the spool recorded it first (or is doing so).
        with contextlib.suppress(DatabaseError):
            if Upload.objects.filter(pk=upload_id).exists():
                spool.remove(settings.SPOOL_DIR, upload_id)
                return True
        return False
    except Exception as exc:  # the database or storage is down: the spool keeps it
        note_disk_full(exc)
        log.warning("upload %s stays in the spool for now: %s", upload_id, _describe(exc))
        return False
    spool.remove(settings.SPOOL_DIR, upload_id)
    return True


def _ended(remote_prediction_id):
    """Whether the prediction an upload names has ended (Cog names ours by our id)."""
    return (
        bool(remote_prediction_id)
        and Prediction.objects.filter(
            Q(pk=remote_prediction_id) | Q(remote_id=remote_prediction_id), status__in=Prediction.TERMINAL
        ).exists()
    )


def drain_spool():
    """Record what the spool holds, until one fails (then the rest waits for
    the next call); how many were recorded."""
    recorded = 0
    for name in spool.names(settings.SPOOL_DIR):
        if not record_spooled(name):
            break
        recorded += 1
    return recorded


def _spooled(upload_id, location, with_data=True):
    """(meta, bytes) of a spooled upload of the server at `location`, or None."""
    if not (upload_id.isascii() and upload_id.isalnum()):
        return None
    entry = spool.read(settings.SPOOL_DIR, upload_id, with_data=with_data)
    return entry if entry and entry[0].get("server") == _server(location) else None


def open_upload(upload_id, server):
    """(a file handle, content type) of an upload of `server`, or None."""
    record_spooled(upload_id)
    try:
        upload = Upload.objects.filter(pk=upload_id, server=server).first()
    except DatabaseError:  # down: the spool may have it
        upload = None
    if upload is not None:
        return upload.file.open("rb"), upload.content_type
    spooled = _spooled(upload_id, server)
    if spooled is not None:
        return io.BytesIO(spooled[1]), spooled[0]["content_type"]
    return None


# --- Publishing files -------------------------------------------------------------


@contextlib.contextmanager
def _staged(files):
    """Write `files` ({name in storage: bytes}) so that none is visible under
    its name until publish() is called, once their row is saved and in its
    transaction. On a local disk each is written under a temporary name beside
    it (a dot file) and renamed; object storage writes whole objects, so
    publish() writes them there. Whatever is not published, or was published
    in a block that then failed, is removed: no file without its row, and none
    half-written."""
    local = isinstance(default_storage, FileSystemStorage)
    temps, published = {}, []

    def publish():
        for name, data in files.items():
            if local:
                os.replace(temps[name], default_storage.path(name))
            else:
                saved = default_storage.save(name, ContentFile(data))
                if saved != name:
                    default_storage.delete(saved)
                    raise OSError(f"storage saved {name} as {saved}")
            published.append(name)

    try:
        if local:
            for name, data in files.items():
                temps[name] = _write_temp(default_storage.path(name), data)
        yield publish
    except BaseException:
        for name in published:
            with contextlib.suppress(Exception):
                default_storage.delete(name)
        raise
    finally:
        for path in temps.values():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)  # not published


def _write_temp(path, data):
    folder, base = os.path.split(path)
    os.makedirs(folder, exist_ok=True)
    temp = os.path.join(folder, f".{base}.{new_id()[:10]}.part")
    try:
        # Not fsynced, as Django's own storage does not: the rename makes it
        # whole or absent to every process, and the spool has already made an
        # upload durable before its 201 (fsync here cost 5 ms a file under load).
        with open(temp, "xb") as fh:
            fh.write(data)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    return temp


# --- A full disk, and what no row names -----------------------------------------------

DISK_FULL_KEY = "lightbox:disk-full"
DISK_FULL_SHOWN = 60  # seconds /healthz and the admin report a full disk after it was last met


def note_disk_full(exc):
    """Remember a full disk met while writing, for /healthz and the admin."""
    if not spool.is_disk_full(exc):
        return
    log.error("disk full: %s: %s", exc.filename or "", exc.strerror)
    with contextlib.suppress(Exception):  # the cache may be down as well; the free-space check still tells
        cache.set(DISK_FULL_KEY, f"{exc.filename or 'a write'}: {exc.strerror}", DISK_FULL_SHOWN)


def disk_problem():
    """ "disk full: ..." when the disk of the spool or of the media has less
    room than one upload may take, or a write met a full disk in the last
    minute; "" when they have room."""
    folders = [settings.SPOOL_DIR]
    if isinstance(default_storage, FileSystemStorage):
        folders.append(settings.MEDIA_ROOT)
    for folder in folders:
        free = spool.free_bytes(folder)
        if free < settings.UPLOAD_MAX_BYTES:
            return f"disk full: {free // 2**20} MB free for {folder}, an upload may take {settings.UPLOAD_MAX_BYTES // 2**20} MB"
    try:
        seen = cache.get(DISK_FULL_KEY)
    except Exception:  # the cache is down: /healthz reports that through the broker or database
        seen = None
    return f"disk full: {seen} (in the last {DISK_FULL_SHOWN} s)" if seen else ""


STORED_FOLDERS = ("outputs", "uploads")


def sweep_orphans():
    """Delete what no row names once it is ORPHAN_TTL old: files under
    outputs/ and uploads/ in storage (left by a process that died between
    writing and recording them, or by a temporary name never published) and
    uploads the spool kept that no one recorded. The names it deleted."""
    removed = [f"spool/{name}" for name in spool.remove_older_than(settings.SPOOL_DIR, settings.ORPHAN_TTL)]
    cutoff = timezone.now() - timedelta(seconds=settings.ORPHAN_TTL)
    for folder in STORED_FOLDERS:
        old = []
        for name in walk(folder):
            with contextlib.suppress(FileNotFoundError):
                if default_storage.get_modified_time(name) < cutoff:
                    old.append(name)
            if len(old) >= 500:
                removed += _delete_unnamed(old)
                old = []
        removed += _delete_unnamed(old)
    return removed


def walk(folder):
    """The names of every file under `folder` in storage."""
    try:
        folders, files = default_storage.listdir(folder)
    except FileNotFoundError:
        return
    for name in files:
        yield f"{folder}/{name}"
    for name in folders:
        yield from walk(f"{folder}/{name}")


def _delete_unnamed(names):
    named = set()
    for row in Output.objects.filter(
        Q(file__in=names) | Q(thumbnail__in=names) | Q(blurred_thumbnail__in=names)
    ).values_list(*Output.FILE_FIELDS):
        named.update(row)
    named.update(Upload.objects.filter(file__in=names).values_list("file", flat=True))
    orphans = [name for name in names if name not in named]
    for name in orphans:
        default_storage.delete(name)
    if orphans:
        log.info("deleted %d files no row names: %s", len(orphans), ", ".join(orphans[:10]))
    return orphans


def _save_output(prediction, index, data, content_type, rating=Output.Rating.SAFE):
    """Store one output whose content type stored_type() gave; False when
    another delivery of the same webhook stored it first."""
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
    named = {}
    for field, (name, content) in files.items():
        field_file = getattr(output, field)
        field_file.name = field_file.field.generate_filename(output, name)
        named[field_file.name] = content
    try:
        with _staged(named) as publish, transaction.atomic():
            output.save()
            publish()
    except IntegrityError:
        # Another webhook delivery stored this output first (under the same
        # names); ours was never published.
        return False
    return True


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

# The names Lightbox gives stored files (app.models.output_upload_to) need no
# quoting or joining: a grid page of 1,000 thumbnails spent a fifth of its time
# in FieldFile.url's urljoin.
PLAIN_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-/]*")


def file_url(name):
    """The default storage's URL of the stored file `name` (what FieldFile.url
    gives), for a page of many."""
    storage = storages["default"]
    if type(storage) is FileSystemStorage and PLAIN_NAME_RE.fullmatch(name) and ".." not in name:
        return storage.base_url + name
    return storage.url(name)


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
