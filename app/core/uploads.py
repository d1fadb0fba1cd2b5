"""Images people upload (an init image, a mask): checked and re-encoded with
Pillow before anything keeps or forwards them.

Only formats in LIGHTBOX_UPLOAD_FORMATS are read; the pixel count is checked
from the header before any pixel is decoded, so a decompression bomb (a small
file that inflates to gigapixels) is refused cheaply; the pixels are then
re-encoded into a fresh file, which drops metadata, trailing data and
anything else a crafted file may carry.

The same goes for images on their way to a model: data: URIs in a
prediction's input (Prediction.start) and images fetched from users' URLs
for our Cog servers (`inline_urls`, through app.core.netguard).
"""

import base64
import io
import math
import tarfile
import zipfile
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from PIL import Image, ImageOps

from app.core import netguard, payloads
from app.core.schema import InputError

OUTPUT_FORMATS = {"JPEG": ("JPEG", "image/jpeg", "jpg"), "PNG": ("PNG", "image/png", "png")}


class UploadRejected(ValueError):
    """An upload Lightbox will not take, with the reason in words."""


@dataclass
class CleanImage:
    data: bytes
    content_type: str
    extension: str
    width: int
    height: int

    def as_file(self, stem="upload"):
        return ContentFile(self.data, name=f"{stem}.{self.extension}")

    @property
    def data_uri(self):
        return data_uri(self.data, self.content_type)


def data_uri(content, content_type):
    return f"data:{content_type or 'application/octet-stream'};base64,{base64.b64encode(content).decode()}"


def replaced(data, values):
    """A copy of the input `data` with each (field, index or None, value) of
    `values` put in its place (netguard.url_fields names them so)."""
    copy = {key: (list(value) if isinstance(value, list) else value) for key, value in data.items()}
    for name, index, value in values:
        if index is None:
            copy[name] = value
        else:
            copy[name][index] = value
    return copy


def clean_image(data, *, max_bytes=None, max_pixels=None, formats=None):
    """Check and re-encode image bytes; returns a CleanImage or raises UploadRejected.

    JPEG stays JPEG (quality 95); every other allowed format becomes PNG.
    """
    max_bytes = max_bytes or settings.UPLOAD_IMAGE_MAX_BYTES
    max_pixels = max_pixels or settings.UPLOAD_MAX_PIXELS
    formats = formats or settings.UPLOAD_FORMATS
    if len(data) > max_bytes:
        raise UploadRejected(f"The file is larger than {max_bytes // (1024 * 1024)} MB.")
    try:
        image = Image.open(io.BytesIO(data), formats=list(formats))
    except Image.DecompressionBombError as exc:
        raise UploadRejected(
            f"The image has too many pixels: the largest allowed is {pixels_text(max_pixels)}."
        ) from exc
    except Exception as exc:  # Pillow raises many kinds for bad bytes
        raise UploadRejected(f"Upload an image: {', '.join(formats)}.") from exc
    with image:
        source_format = image.format or ""
        width, height = image.size
        if width * height > max_pixels or width < 1 or height < 1:
            raise UploadRejected(
                f"The image is {width} x {height} pixels; the largest allowed is {pixels_text(max_pixels)}."
            )
        try:
            image.load()
            image = ImageOps.exif_transpose(image)
        except Exception as exc:
            raise UploadRejected("The image is damaged and cannot be read.") from exc
        pillow_format, content_type, extension = OUTPUT_FORMATS.get(source_format, OUTPUT_FORMATS["PNG"])
        if pillow_format == "JPEG":
            image = image.convert("RGB")
        elif image.mode not in ("RGB", "RGBA", "L", "LA"):
            image = image.convert("RGBA" if "transparency" in image.info or image.mode in ("P", "PA") else "RGB")
        buffer = io.BytesIO()
        image.save(buffer, pillow_format, **({"quality": 95} if pillow_format == "JPEG" else {}))
        return CleanImage(buffer.getvalue(), content_type, extension, image.width, image.height)


def pixels_text(max_pixels):
    """The pixel limit as people say it: "4096 x 4096" for a square limit,
    else megapixels ("2.1 megapixels"), never a raw count."""
    side = math.isqrt(max_pixels)
    if side * side == max_pixels:
        return f"{side} x {side} pixels"
    return f"{max_pixels / 1_000_000:.1f} megapixels"


def clean_upload(uploaded_file):
    """For forms: a Django UploadedFile in, a CleanImage out (re-encoded, at
    most LIGHTBOX_UPLOAD_IMAGE_MAX_BYTES); raises ValidationError with the reason."""
    limit = settings.UPLOAD_IMAGE_MAX_BYTES
    if uploaded_file.size is not None and uploaded_file.size > limit:
        raise ValidationError(f"The file is larger than {limit // (1024 * 1024)} MB.")
    try:
        cleaned = clean_image(uploaded_file.read(limit + 1))
    except UploadRejected as exc:
        raise ValidationError(str(exc)) from exc
    return cleaned


# Formats Pillow knows by a signature at the start of the file: sniffing only
# these cannot mistake another kind of file for an image.
SNIFFED_FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF", "ICO", "JPEG2000", "PSD", "QOI", "AVIF", "HEIF")


def is_image(data, media_type):
    """Called an image, or one by its bytes whatever it is called: a PNG sent
    as application/octet-stream must not skip the checks."""
    if media_type.split("/")[0].strip().lower() == "image":
        return True
    try:
        with Image.open(io.BytesIO(data), formats=SNIFFED_FORMATS):
            return True
    except Image.DecompressionBombError:
        return True
    except Exception:  # Pillow raises many kinds for what it cannot read
        return False


def clean_image_bytes_for_model(data, content_type):
    """Image bytes on their way to a model server, re-encoded; other files as they are."""
    if not is_image(data, content_type or ""):
        return data, content_type
    cleaned = clean_image(data)
    return cleaned.data, cleaned.content_type


def clean_input_images(version, data):
    """`data` with every image given as a data: URI checked and re-encoded, as
    an upload is; raises schema.InputError naming the field."""
    cleaned, errors = [], {}
    for name, index, value in netguard.uri_fields(version, data):
        if not value.startswith("data:"):
            continue
        try:
            raw, media_type = payloads.decode_data_uri(value)
            if not is_image(raw, media_type):
                continue
            uri = clean_image(raw).data_uri
        except ValueError as exc:  # UploadRejected too
            errors.setdefault(name, []).append(str(exc))
            continue
        cleaned.append((name, index, uri))
    if errors:
        raise InputError(errors)
    return replaced(data, cleaned)


def inline_urls(version, data):
    """`data` with every http(s) file URI fetched here, through the guard, and
    given as a data: URI (images re-encoded), so the model server
    never requests a user's image URL. Text URLs (a LoRA) are checked again,
    their host may have moved inside since the prediction was created. Raises
    netguard.UnsafeURL whose message names the field."""
    inlined = []
    for name, index, value, is_file in netguard.url_fields(version, data):
        if not netguard.is_http(value):
            continue
        try:
            if not is_file:
                netguard.check_url(value)
                continue
            content, content_type = netguard.fetch(value, settings.UPLOAD_MAX_BYTES)
            try:
                content, content_type = clean_image_bytes_for_model(content, content_type)
            except UploadRejected as exc:
                raise netguard.UnsafeURL(f"The image at {value[:100]}: {exc}", public=f"{name}: {exc}") from exc
        except netguard.UnsafeURL as exc:
            raise netguard.UnsafeURL(str(exc), public=netguard.refusal(name, exc)) from exc
        inlined.append((name, index, data_uri(content, content_type)))
    return replaced(data, inlined)


# --- A training's images (fine-tuning) -------------------------------------------
# A zip or tar of images, or image files dropped on a page: each member goes
# through clean_image (format, pixels, size), their number and total size are
# bounded, and the trainer gets a fresh zip of the re-encoded images only, so
# no path, link, hidden file or anything else an archive may carry reaches it.
# Captions (a .txt beside an image, as Replicate's trainers read them) are kept.

CAPTION_MAX_BYTES = 2000


def training_archive(files, *, max_images=None, max_bytes=None):
    """(zip bytes, image count) from `files`, a list of (name, bytes): archives
    (zip, tar) are opened, images checked. Raises UploadRejected saying what is
    wrong with which file."""
    max_images = max_images or settings.TRAINING_MAX_IMAGES
    max_bytes = max_bytes or settings.TRAINING_MAX_BYTES
    total = sum(len(data) for _, data in files)
    if total > max_bytes:
        raise UploadRejected(f"The training images are larger than {size_text(max_bytes)} in all.")
    members = []
    for name, data in files:
        # "PK": a zip by its first bytes, even one too damaged to open (then said so).
        if is_archive(data):
            members.extend(_archive_members(name, data, max_images, max_bytes))
        else:
            members.append((name, data))
    images, captions = [], {}
    for name, data in members:
        stem = _stem(name)
        if name.lower().endswith(".txt"):
            captions[stem] = data[:CAPTION_MAX_BYTES].decode("utf-8", "replace").strip()
            continue
        if len(images) >= max_images:
            raise UploadRejected(f"Give at most {max_images} training images.")
        try:
            images.append((stem, clean_image(data)))
        except UploadRejected as exc:
            raise UploadRejected(f"{_shown(name)}: {exc}") from None
    if not images:
        raise UploadRejected("There are no images to train on: give a zip or tar of PNG, JPEG or WEBP images.")
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for index, (stem, image) in enumerate(images):
            archive.writestr(f"{index:04d}.{image.extension}", image.data)
            if captions.get(stem):
                archive.writestr(f"{index:04d}.txt", captions[stem])
    return out.getvalue(), len(images)


def is_archive(data):
    """A zip (by its first bytes, even a damaged one) or a tar."""
    return data[:2] == b"PK" or zipfile.is_zipfile(io.BytesIO(data)) or _is_tar(data)


def _is_tar(data):
    try:
        with tarfile.open(fileobj=io.BytesIO(data)) as archive:
            archive.next()
        return True
    except (tarfile.TarError, EOFError, OSError):
        return False


def _archive_members(name, data, max_images, max_bytes):
    """(member name, bytes) of the regular files of a zip or tar: directories,
    links and hidden files (macOS' __MACOSX, .DS_Store) are skipped; what they
    would inflate to is bounded before anything is read (a zip bomb)."""
    budget = max_bytes
    found = []
    try:
        if data[:2] == b"PK" or zipfile.is_zipfile(io.BytesIO(data)):
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                entries = [info for info in archive.infolist() if not info.is_dir() and _plain(info.filename)]
                if len(entries) > 2 * max_images:
                    raise UploadRejected(f"{_shown(name)} has {len(entries)} files; give at most {max_images} images.")
                for info in entries:
                    budget -= info.file_size
                    if budget < 0:
                        raise UploadRejected(f"{_shown(name)} unpacks to more than {size_text(max_bytes)}.")
                    found.append((info.filename, archive.read(info)))
        else:
            with tarfile.open(fileobj=io.BytesIO(data)) as archive:
                entries = [member for member in archive.getmembers() if member.isfile() and _plain(member.name)]
                if len(entries) > 2 * max_images:
                    raise UploadRejected(f"{_shown(name)} has {len(entries)} files; give at most {max_images} images.")
                for member in entries:
                    budget -= member.size
                    if budget < 0:
                        raise UploadRejected(f"{_shown(name)} unpacks to more than {size_text(max_bytes)}.")
                    found.append((member.name, archive.extractfile(member).read()))
    except UploadRejected:
        raise
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, RuntimeError, NotImplementedError, ValueError):
        # RuntimeError: an encrypted zip; NotImplementedError: a compression it cannot read.
        raise UploadRejected(f"{_shown(name)} is not an archive that can be read (a damaged or encrypted zip or tar).")
    return found


def size_text(size):
    """A size as people say it: "64 MB", or "300 bytes" below a megabyte."""
    mb = 1024 * 1024
    return f"{size / mb:g} MB" if size >= mb else f"{size:,} bytes"


def _plain(member_name):
    parts = member_name.replace("\\", "/").split("/")
    return not any(part.startswith(".") or part == "__MACOSX" for part in parts)


def _stem(name):
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    return base.rsplit(".", 1)[0] if "." in base else base


def _shown(name):
    """A member's name as an error message quotes it: short, printable."""
    text = "".join(char if char.isprintable() else "?" for char in (name or "the file"))
    return text[:80]
