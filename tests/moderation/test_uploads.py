"""Uploaded images: a format allowlist, a pixel cap checked before decoding
(decompression bombs), and a fresh re-encode that keeps nothing else."""

import io
import struct
import zlib

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image, PngImagePlugin

from app.core.uploads import UploadRejected, clean_image, clean_upload


def _image(fmt="PNG", size=(40, 30), mode="RGB", **save):
    buffer = io.BytesIO()
    Image.new(mode, size, (120, 10, 200) if mode == "RGB" else 0).save(buffer, fmt, **save)
    return buffer.getvalue()


def _png_bomb(width=50_000, height=50_000):
    """A valid PNG header claiming 2.5 gigapixels; a few hundred bytes on disk."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 1000))
        + chunk(b"IEND", b"")
    )


def test_a_png_is_re_encoded_without_its_metadata():
    info = PngImagePlugin.PngInfo()
    info.add_text("secret", "gps and more")
    data = _image(pnginfo=info) + b"<script>trailing</script>"

    cleaned = clean_image(data)

    assert (cleaned.content_type, cleaned.width, cleaned.height) == ("image/png", 40, 30)
    with Image.open(io.BytesIO(cleaned.data)) as image:
        assert "secret" not in image.info
    assert b"<script>" not in cleaned.data


def test_jpeg_stays_jpeg_and_webp_becomes_png():
    assert clean_image(_image("JPEG")).content_type == "image/jpeg"
    assert clean_image(_image("WEBP")).content_type == "image/png"


def test_formats_outside_the_allowlist_are_refused():
    for data in (_image("GIF", mode="P"), _image("BMP"), _image("TIFF"), b"%PDF-1.4", b"<svg></svg>"):
        with pytest.raises(UploadRejected, match="Upload an image"):
            clean_image(data)


def test_a_decompression_bomb_is_refused_before_decoding():
    with pytest.raises(UploadRejected, match="pixels"):
        clean_image(_png_bomb())  # past Pillow's own bomb limit
    # In words a person uses: sizes, not a count of pixels ("16,777,216").
    with pytest.raises(UploadRejected, match="5000 x 5000 pixels; the largest allowed is 4096 x 4096 pixels"):
        clean_image(_png_bomb(5000, 5000))  # under Pillow's, over LIGHTBOX_UPLOAD_MAX_PIXELS


def test_the_pixel_and_byte_caps():
    with pytest.raises(UploadRejected, match="largest allowed is 10 x 10 pixels"):
        clean_image(_image(size=(20, 20)), max_pixels=100)
    with pytest.raises(UploadRejected, match="largest allowed is 2.0 megapixels"):
        clean_image(_image(size=(1500, 1500)), max_pixels=2_000_000)
    with pytest.raises(UploadRejected, match="larger than"):
        clean_image(_image(), max_bytes=10)


def test_a_truncated_image_is_refused():
    with pytest.raises(UploadRejected, match="damaged"):
        clean_image(_image(size=(300, 300))[:200])


def test_the_form_helper_raises_validation_errors():
    cleaned = clean_upload(SimpleUploadedFile("in.png", _image(), content_type="image/png"))
    assert cleaned.as_file().name == "upload.png" and cleaned.data_uri.startswith("data:image/png;base64,")
    with pytest.raises(ValidationError):
        clean_upload(SimpleUploadedFile("x.png", _png_bomb(), content_type="image/png"))


def test_the_playground_takes_images_up_to_the_configured_size(settings):
    """One upload limit, LIGHTBOX_UPLOAD_IMAGE_MAX_BYTES: the form said 10 MB."""
    from types import SimpleNamespace

    from app.forms import PlaygroundForm

    props = {
        "prompt": {"type": "string", "title": "Prompt"},
        "image": {"type": "string", "format": "uri", "title": "Image"},
    }
    version = SimpleNamespace(
        id="0" * 64,
        model=SimpleNamespace(name="tiny"),
        openapi_schema={"components": {"schemas": {"Input": {"properties": props}}}},
        input_schema={"properties": props},
        trigger_word="",
    )

    def form(upload):
        bound = PlaygroundForm([version], {"prompt": "a fox"}, {"image": upload})
        return bound, bound.is_valid()

    big = _image()
    settings.UPLOAD_IMAGE_MAX_BYTES = len(big) - 1
    refused, valid = form(SimpleUploadedFile("big.png", big, content_type="image/png"))
    assert not valid and "larger than" in refused.errors["image"][0]
    settings.UPLOAD_IMAGE_MAX_BYTES = len(big)
    taken, valid = form(SimpleUploadedFile("ok.png", big, content_type="image/png"))
    assert valid and taken.cleaned_data["image"].startswith("data:image/png;base64,")
