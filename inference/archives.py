"""A training's images: read from a zip or tar archive, checked, in memory.

Nothing is extracted to disk, so a member's name cannot write anywhere; names
that would point outside the archive (absolute, "..", links) are refused all
the same, since an archive that has them was made to attack someone. Sizes are
counted on the bytes actually read, not on what the headers claim (a zip bomb
lies in them), and every image's pixels are checked before it is decoded.
A caption is a .txt file with the image's name ("cat.png" and "cat.txt").
"""

import io
import os
import posixpath
import tarfile
import zipfile
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")
KINDS = ", ".join(IMAGE_EXTENSIONS)


def _limit(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


def limits() -> dict:
    """Read at each training, so a server's environment can tighten them."""
    return {
        "files": _limit("LIGHTBOX_TRAIN_MAX_FILES", 1000),  # members of any kind
        "images": _limit("LIGHTBOX_TRAIN_MAX_IMAGES", 500),
        "bytes": _limit("LIGHTBOX_TRAIN_MAX_BYTES", 1024**3),  # uncompressed, all members
        "pixels": _limit("LIGHTBOX_TRAIN_MAX_PIXELS", 40_000_000),  # one image
    }


class BadArchive(ValueError):
    pass


@dataclass
class Example:
    name: str
    image: Image.Image  # at most `short_side` on its shorter side (read's argument)
    caption: str | None
    original_size: tuple  # (width, height) in the archive


def fit_short_side(image: Image.Image, size: int) -> Image.Image:
    """The image scaled so that its shorter side is `size` (up or down)."""
    width, height = image.size
    scale = size / min(width, height)
    target = (max(size, round(width * scale)), max(size, round(height * scale)))
    return image if target == image.size else image.resize(target, Image.LANCZOS)


def _safe_name(name: str) -> str:
    clean = name.replace("\\", "/")
    parts = clean.split("/")
    if clean.startswith("/") or ".." in parts or (parts and parts[0].endswith(":")):
        raise BadArchive(f"input_images: member {name[:200]!r} points outside the archive")
    return posixpath.normpath(clean)


def _skipped(name: str) -> bool:
    """Folders and the files archivers add (macOS resource forks, hidden files)."""
    base = posixpath.basename(name)
    return name.startswith("__MACOSX/") or base.startswith(".") or not base


def _zip_members(path):
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            if (info.external_attr >> 16) & 0o170000 == 0o120000:
                raise BadArchive(f"input_images: member {info.filename[:200]!r} is a link")
            yield info.filename, lambda info=info: archive.open(info)


def _tar_members(path):
    with tarfile.open(path) as archive:
        for member in archive:
            if member.isdir():
                continue
            if member.issym() or member.islnk():
                raise BadArchive(f"input_images: member {member.name[:200]!r} is a link")
            if not member.isfile():
                raise BadArchive(f"input_images: member {member.name[:200]!r} is not a regular file")
            yield member.name, lambda member=member: archive.extractfile(member)


def _members(path):
    if zipfile.is_zipfile(path):
        return _zip_members(path)
    try:
        with tarfile.open(path):
            pass
    except (tarfile.TarError, OSError):
        raise BadArchive(
            f"input_images must be a zip or tar archive (optionally gzipped) of images ({KINDS})"
        ) from None
    return _tar_members(path)


def read(path, short_side: int | None = None) -> list[Example]:
    """The archive's images (RGB, EXIF rotation applied) with their captions,
    sorted by name so that the same archive always gives the same order. With
    `short_side`, larger images are scaled down to it as they are read, so
    hundreds of large photos never sit in memory at full size."""
    limit = limits()
    images, captions = {}, {}
    count = total = 0
    try:
        for name, opener in _members(path):
            name = _safe_name(name)
            count += 1
            if count > limit["files"]:
                raise BadArchive(f"input_images has more than {limit['files']} files")
            if _skipped(name):
                continue
            stem, ext = posixpath.splitext(name)
            ext = ext.lower()
            if ext not in IMAGE_EXTENSIONS and ext != ".txt":
                continue
            if ext != ".txt" and len(images) >= limit["images"]:
                raise BadArchive(f"input_images has more than {limit['images']} images")
            data = bytearray()
            with opener() as stream:
                while chunk := stream.read(1 << 20):
                    data += chunk
                    if total + len(data) > limit["bytes"]:
                        raise BadArchive(f"input_images holds more than {limit['bytes']} bytes once unpacked")
            total += len(data)
            if ext == ".txt":
                captions[stem] = _caption(name, bytes(data))
            else:
                image = _image(name, bytes(data), limit["pixels"])
                size = image.size
                if short_side and min(size) > short_side:
                    image = fit_short_side(image, short_side)
                images[stem] = (name, image, size)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zipfile.LargeZipFile, NotImplementedError) as e:
        raise BadArchive(f"input_images is a damaged archive ({e})") from None
    if not images:
        raise BadArchive(f"input_images has no images ({KINDS})")
    return [Example(name, image, captions.get(stem), size) for stem, (name, image, size) in sorted(images.items())]


def _caption(name: str, data: bytes) -> str:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadArchive(f"input_images: caption {name[:200]!r} is not UTF-8 text") from None
    return " ".join(text.split())[:1000]


def _image(name: str, data: bytes, max_pixels: int) -> Image.Image:
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise BadArchive(f"input_images: {name[:200]!r} is {width}x{height}, more than {max_pixels} pixels")
            image = ImageOps.exif_transpose(image)
            return image.convert("RGB")
    except BadArchive:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise BadArchive(f"input_images: {name[:200]!r} is not a readable image ({type(e).__name__})") from None
