"""Reproducibility bundles as bytes: writing and safely reading the zip, and
comparing images by their pixels (docs/bundles.md).

A bundle comes from anyone, so reading one trusts nothing: the zip's own
sizes are checked before anything is inflated, and inflating stops at the
limit whatever the header claimed (zip bombs); a member's name must be one the
manifest lists, under images/ with a plain file name (path traversal); the
manifest must be small, JSON, of a format this code reads; and every image
must match the SHA-256 the manifest gives it (tampering, truncation).
"""

import hashlib
import io
import json
import re
import zipfile
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from app.core import payloads

FORMAT = "lightbox-bundle/1"
FORMAT_RE = re.compile(r"^lightbox-bundle/(\d+)$")
MANIFEST = "manifest.json"
MANIFEST_MAX_BYTES = 4 * 1024 * 1024
IMAGE_MAX_BYTES = 64 * 1024 * 1024
MAX_MEMBERS = 2000
# A PNG deflates to a few times its size at most; thousands of times is a bomb.
MAX_RATIO = 200
IMAGE_NAME_RE = re.compile(r"^images/[A-Za-z0-9][A-Za-z0-9._-]{0,120}\.png$")
IMAGE_MAX_PIXELS = 64 * 1024 * 1024

IDENTICAL, CLOSE, DIFFERENT = "identical", "close", "different"


class BundleError(ValueError):
    """Why a bundle cannot be read, in words for the person who sent it."""


@dataclass
class Bundle:
    manifest: dict
    images: dict = field(default_factory=dict)  # member name -> bytes


def write(manifest, images):
    """The zip: manifest.json first, then each image (stored, not deflated:
    PNGs are compressed already)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(MANIFEST, json.dumps(manifest, indent=2, sort_keys=True), zipfile.ZIP_DEFLATED)
        for name, data in images.items():
            archive.writestr(name, data, zipfile.ZIP_STORED)
    return buffer.getvalue()


def read(data, max_bytes):
    """The Bundle in `data` (the zip's bytes), or raise BundleError."""
    if len(data) > max_bytes:
        raise BundleError(f"The bundle is larger than {max_bytes // (1024 * 1024)} MB (LIGHTBOX_BUNDLE_MAX_BYTES).")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = archive.infolist()
    except (zipfile.BadZipFile, EOFError, ValueError, OSError):
        raise BundleError("This is not a complete zip file: it may be truncated, or not a bundle at all.") from None
    if len(members) > MAX_MEMBERS:
        raise BundleError(f"The bundle holds {len(members)} files; at most {MAX_MEMBERS}.")
    by_name = {}
    for member in members:
        if member.filename in by_name:
            raise BundleError(f"The bundle holds {member.filename!r} twice.")
        by_name[member.filename] = member
    if MANIFEST not in by_name:
        raise BundleError("The bundle has no manifest.json at its top level.")
    manifest = _manifest(archive, by_name[MANIFEST])
    expected = _listed_images(manifest)
    for name in by_name:
        if name != MANIFEST and name not in expected:
            raise BundleError(f"The bundle holds {name[:200]!r}, which its manifest does not list.")
    images = {}
    for name, sha256 in expected.items():
        if name not in by_name:
            raise BundleError(f"The manifest lists {name}, which the bundle does not hold.")
        content = _member(archive, by_name[name], IMAGE_MAX_BYTES)
        if hashlib.sha256(content).hexdigest() != sha256:
            raise BundleError(f"{name} does not match the SHA-256 its manifest gives: the bundle was changed.")
        images[name] = content
    return Bundle(manifest, images)


def _member(archive, member, limit):
    """A member's bytes, refusing what would inflate past `limit` or far past
    its compressed size, by the header and while inflating."""
    if member.file_size > limit:
        raise BundleError(f"{member.filename[:200]} is larger than {limit // (1024 * 1024)} MB.")
    if member.compress_size and member.file_size / member.compress_size > MAX_RATIO:
        raise BundleError(f"{member.filename[:200]} inflates {MAX_RATIO}+ times: refused as a zip bomb.")
    try:
        with archive.open(member) as handle:
            content = handle.read(limit + 1)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError, RuntimeError):
        raise BundleError(f"{member.filename[:200]} cannot be read: the bundle is damaged or truncated.") from None
    if len(content) > limit:
        raise BundleError(f"{member.filename[:200]} is larger than {limit // (1024 * 1024)} MB.")
    return content


def _manifest(archive, member):
    raw = _member(archive, member, MANIFEST_MAX_BYTES)
    try:
        manifest = payloads.loads(raw)
    except ValueError as exc:
        raise BundleError(f"manifest.json is not JSON Lightbox can read: {exc}") from None
    if not isinstance(manifest, dict):
        raise BundleError("manifest.json must be a JSON object.")
    bad = payloads.find_bad_text(manifest)
    if bad:
        raise BundleError(f"manifest.json holds text that cannot be stored: {bad[1]}")
    found = manifest.get("format")
    match = FORMAT_RE.match(found) if isinstance(found, str) else None
    if match is None:
        raise BundleError(f"manifest.json does not say it is a Lightbox bundle (format should be {FORMAT!r}).")
    if match.group(0) != FORMAT:
        raise BundleError(
            f"This bundle is format {found[:40]!r}, newer than this Lightbox reads ({FORMAT!r}): "
            "import it on an up-to-date Lightbox."
        )
    for key in ("versions", "comparisons", "predictions"):
        if not isinstance(manifest.get(key), list):
            raise BundleError(f"manifest.json has no {key!r} list.")
    return manifest


def _listed_images(manifest):
    """{member name: sha256} of every output the manifest lists."""
    listed = {}
    for prediction in manifest["predictions"]:
        outputs = prediction.get("outputs") if isinstance(prediction, dict) else None
        if not isinstance(outputs, list):
            raise BundleError("Each prediction in manifest.json needs an 'outputs' list.")
        for output in outputs:
            name = output.get("file") if isinstance(output, dict) else None
            sha256 = output.get("sha256") if isinstance(output, dict) else None
            if not isinstance(name, str) or not IMAGE_NAME_RE.match(name) or ".." in name:
                raise BundleError(f"The manifest names an image {str(name)[:200]!r}: only images/<name>.png may be.")
            if not isinstance(sha256, str) or not re.fullmatch(r"[0-9a-f]{64}", sha256):
                raise BundleError(f"The manifest gives {name} no SHA-256.")
            listed[name] = sha256
    return listed


# --- Comparing images -------------------------------------------------------------


def _decoded(data):
    """The image's pixels as RGBA, refusing what is not an image or too large."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > IMAGE_MAX_PIXELS:
                raise ValueError("too many pixels")
            return image.convert("RGBA")
    except Exception as exc:  # Pillow raises many kinds for bad bytes
        raise ValueError("not an image Pillow can read") from exc


def pixel_hash(data):
    """SHA-256 of the decoded pixels (RGBA, with the size), not of the file:
    the same picture saved with other PNG chunks or compression hashes the same."""
    image = _decoded(data)
    digest = hashlib.sha256(f"RGBA {image.width}x{image.height}\n".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


def distance(a, b):
    """Mean absolute pixel difference of two images, 0 (the same) to 1 (black
    against white), over RGBA; 1 when their sizes differ."""
    first, second = _decoded(a), _decoded(b)
    if first.size != second.size:
        return 1.0
    difference = np.abs(np.asarray(first, dtype=np.int16) - np.asarray(second, dtype=np.int16))
    return float(difference.mean() / 255)


def verdict(expected_pixels, expected, actual, threshold):
    """(verdict, distance) of `actual` (bytes) against what was expected: its
    pixel hash, and its bytes when there are any to measure against."""
    if pixel_hash(actual) == expected_pixels:
        return IDENTICAL, 0.0
    if expected is None:
        return DIFFERENT, None
    measured = distance(expected, actual)
    return (CLOSE if measured <= threshold else DIFFERENT), measured
