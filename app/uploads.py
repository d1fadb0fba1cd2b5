"""Images people upload (an init image, a mask): checked and re-encoded with
Pillow before anything keeps or forwards them.

Only formats in LIGHTBOX_UPLOAD_FORMATS are read; the pixel count is checked
from the header before any pixel is decoded, so a decompression bomb (a small
file that inflates to gigapixels) is refused cheaply; the pixels are then
re-encoded into a fresh file, which drops metadata, trailing data and
anything else a crafted file may carry.

The same goes for images on their way to a model: data: URIs in a
prediction's input (Prediction.start) and images fetched from users' URLs
for our Cog servers (app.netguard.inline_urls).
"""

import base64
import io
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from PIL import Image, ImageOps

from app import payloads

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
        raise UploadRejected("The image has too many pixels.") from exc
    except Exception as exc:  # Pillow raises many kinds for bad bytes
        raise UploadRejected(f"Upload an image: {', '.join(formats)}.") from exc
    with image:
        source_format = image.format or ""
        width, height = image.size
        if width * height > max_pixels or width < 1 or height < 1:
            raise UploadRejected(
                f"The image is {width}x{height}; images may have at most {max_pixels:,} pixels."
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


def clean_upload(uploaded_file):
    """For forms: a Django UploadedFile in, a re-encoded ContentFile out;
    raises ValidationError with the reason."""
    limit = settings.UPLOAD_IMAGE_MAX_BYTES
    if uploaded_file.size is not None and uploaded_file.size > limit:
        raise ValidationError(f"The file is larger than {limit // (1024 * 1024)} MB.")
    try:
        cleaned = clean_image(uploaded_file.read(limit + 1))
    except UploadRejected as exc:
        raise ValidationError(str(exc)) from exc
    return cleaned.as_file()


def _data_uri(cleaned):
    return f"data:{cleaned.content_type};base64,{base64.b64encode(cleaned.data).decode()}"


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
    from app.netguard import uri_fields
    from app.schema import InputError

    cleaned_input = {key: (list(value) if isinstance(value, list) else value) for key, value in data.items()}
    errors = {}
    for name, index, value in uri_fields(version, data):
        if not value.startswith("data:"):
            continue
        try:
            raw, media_type = payloads.decode_data_uri(value)
            if not is_image(raw, media_type):
                continue
            uri = _data_uri(clean_image(raw))
        except ValueError as exc:  # UploadRejected too
            errors.setdefault(name, []).append(str(exc))
            continue
        if index is None:
            cleaned_input[name] = uri
        else:
            cleaned_input[name][index] = uri
    if errors:
        raise InputError(errors)
    return cleaned_input
