"""Files users upload through /v1/files to give as predictions' inputs
(Replicate's files API): checked and re-encoded like any uploaded image
(app.core.uploads), private to their owner, deleted when they expire
(LIGHTBOX_FILE_TTL; the reconciler sweeps them).

A file's URL given as a prediction's input is read here, from storage: it is
this site's own address, which the network guard rightly refuses to fetch
(app.core.netguard), and the file is its owner's only."""

import hashlib
import re
from datetime import timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.core.files.base import ContentFile
from django.http.request import split_domain_port, validate_host
from django.urls import reverse
from django.utils import timezone

from app.core import netguard, uploads
from app.core.schema import InputError
from app.models import File

FILE_ID_RE = re.compile(r"[a-z0-9]{1,32}")


class FileRefused(ValueError):
    """An upload /v1/files does not take: `status` is 413 (too large), 403
    (too many files held) or 422 (not an image Lightbox takes)."""

    def __init__(self, status, detail):
        super().__init__(detail)
        self.status = status


def create(owner, content, *, filename="", metadata=None):
    """Store `content` (an UploadedFile) as `owner`'s File; raises FileRefused.
    At most LIGHTBOX_FILES_PER_USER live files each; images only (LIGHTBOX_UPLOAD_FORMATS, told by the bytes, whatever type the
    client declared), at most LIGHTBOX_UPLOAD_IMAGE_MAX_BYTES, re-encoded."""
    held = File.objects.live().filter(owner=owner).count()
    if settings.FILES_PER_USER is not None and held >= settings.FILES_PER_USER:
        raise FileRefused(
            403,
            f"You hold {held} files, as many as one may (LIGHTBOX_FILES_PER_USER): delete some, or wait until they expire.",
        )
    limit = max(settings.UPLOAD_IMAGE_MAX_BYTES, settings.TRAINING_MAX_BYTES)
    if content.size is not None and content.size > limit:
        raise FileRefused(413, f"Files must be at most {_amount(limit)}.")
    data = content.read(limit + 1)
    if len(data) > limit:
        raise FileRefused(413, f"Files must be at most {_amount(limit)}.")
    if len(data) > settings.UPLOAD_IMAGE_MAX_BYTES and not uploads.is_archive(data):
        raise FileRefused(413, f"Files must be at most {_amount(settings.UPLOAD_IMAGE_MAX_BYTES)}.")
    try:
        cleaned = _cleaned(data)
    except uploads.UploadRejected as exc:
        raise FileRefused(422, str(exc)) from exc
    now = timezone.now()
    found = File(
        owner=owner,
        name=(filename or content.name or "file")[:255],
        content_type=cleaned.content_type,
        size=len(cleaned.data),
        sha256=hashlib.sha256(cleaned.data).hexdigest(),
        metadata=metadata or {},
        created_at=now,
        expires_at=now + timedelta(seconds=settings.FILE_TTL),
    )
    # Stored under a name of ours: the client's is shown, never a path.
    found.file.save(f"content.{cleaned.extension}", ContentFile(cleaned.data), save=False)
    found.save()
    return found


def _cleaned(data):
    """An image, re-encoded; or (for a training's input_images: trainapi) a zip
    or tar of images, each checked as an image is, re-packed as a zip."""
    if uploads.is_archive(data):
        archive, _ = uploads.training_archive([("the archive", data)])
        return uploads.CleanImage(archive, "application/zip", "zip", 0, 0)
    return uploads.clean_image(data)


def _amount(size):
    mb = 1024 * 1024
    return f"{size // mb} MB" if size % mb == 0 else f"{size:,} bytes"


def get_for_owner(owner, file_id):
    """`owner`'s live file `file_id`, or None (expired ones are gone)."""
    if owner is None or not isinstance(file_id, str) or not FILE_ID_RE.fullmatch(file_id):
        return None
    return File.objects.live().filter(pk=file_id, owner=owner).first()


def sweep(limit=500):
    """Delete expired files (their stored content goes with them: app.signals)."""
    for found in File.objects.expired()[:limit]:
        found.delete()


def file_id_in(url):
    """The id of the file a URL of this site's /v1/files names (its resource
    or its download), or None for any other URL."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not _is_this_site(parts.netloc):
        return None
    prefix = reverse("api:files") + "/"
    if not parts.path.startswith(prefix):
        return None
    file_id = parts.path.removeprefix(prefix).removesuffix("/download")
    return file_id if FILE_ID_RE.fullmatch(file_id) else None


def _is_this_site(netloc):
    if netloc.lower() == urlsplit(settings.SITE_URL).netloc.lower():
        return True
    host, _ = split_domain_port(netloc)
    return bool(host) and validate_host(host, settings.ALLOWED_HOSTS)


def resolve_inputs(version, data, owner):
    """`data` with every file input that names a file of /v1/files given as
    its content, a data: URI (then checked as any image given so:
    app.core.uploads.clean_input_images); raises InputError naming the field
    when the file is not `owner`'s, or has expired."""
    resolved, errors = [], {}
    for name, index, value in netguard.uri_fields(version, data):
        file_id = file_id_in(value)
        if file_id is None:
            continue
        found = get_for_owner(owner, file_id)
        if found is None:
            errors.setdefault(name, []).append(f"No file {file_id}: it does not exist, has expired or is not yours.")
            continue
        with found.file.open("rb") as handle:
            resolved.append((name, index, uploads.data_uri(handle.read(), found.content_type)))
    if errors:
        raise InputError(errors)
    return uploads.replaced(data, resolved)
