"""Reading a bundle trusts nothing (app.core.bundles): each bad zip is refused
with a message that says what is wrong; and the image measures."""

import hashlib
import io
import json
import zipfile

import pytest
from PIL import Image

from app.core import bundles
from app.core.bundles import BundleError

MAX = 10 * 1024 * 1024


def png(color=(200, 40, 40), size=(32, 24), **save):
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG", **save)
    return buffer.getvalue()


def manifest(images, **changes):
    outputs = [
        {"index": i, "file": name, "sha256": hashlib.sha256(data).hexdigest(), "pixel_sha256": bundles.pixel_hash(data)}
        for i, (name, data) in enumerate(images.items())
    ]
    found = {
        "format": bundles.FORMAT,
        "kind": "prediction",
        "versions": [{"id": "v1", "model": "local/tiny-sd"}],
        "comparisons": [],
        "predictions": [{"id": "p1", "version": "v1", "input": {"prompt": "a fox", "seed": 1}, "outputs": outputs}],
    }
    found.update(changes)
    return found


def good():
    images = {"images/p1-0.png": png()}
    return bundles.write(manifest(images), images)


def test_it_reads_what_it_writes():
    bundle = bundles.read(good(), MAX)
    assert bundle.manifest["format"] == "lightbox-bundle/1"
    assert list(bundle.images) == ["images/p1-0.png"]


def test_a_truncated_zip_is_refused():
    data = good()
    with pytest.raises(BundleError, match="not a complete zip file"):
        bundles.read(data[: len(data) // 2], MAX)


def test_random_bytes_are_refused():
    with pytest.raises(BundleError, match="not a complete zip file"):
        bundles.read(b"PK\x03\x04 this is not a zip", MAX)


def test_a_changed_image_is_refused():
    images = {"images/p1-0.png": png()}
    written = manifest(images)
    tampered = {"images/p1-0.png": png(color=(0, 0, 255))}
    with pytest.raises(BundleError, match="does not match the SHA-256.*changed"):
        bundles.read(bundles.write(written, tampered), MAX)


def test_a_future_format_is_refused_with_its_name():
    images = {"images/p1-0.png": png()}
    data = bundles.write(manifest(images, format="lightbox-bundle/2"), images)
    with pytest.raises(BundleError, match=r"format 'lightbox-bundle/2', newer than this Lightbox reads"):
        bundles.read(data, MAX)


def test_something_else_than_a_bundle_is_refused():
    images = {"images/p1-0.png": png()}
    data = bundles.write(manifest(images, format="something/1"), images)
    with pytest.raises(BundleError, match="does not say it is a Lightbox bundle"):
        bundles.read(data, MAX)


def raw_zip(members, compression=zipfile.ZIP_DEFLATED):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "name", ["../evil.png", "/etc/evil.png", "images/../../evil.png", "images/sub/x.png", "a\\b.png"]
)
def test_paths_outside_images_are_refused(name):
    data = png()
    listed = manifest({name: data})
    with pytest.raises(BundleError, match="only images/<name>.png may be"):
        bundles.read(raw_zip({"manifest.json": json.dumps(listed), name: data}), MAX)


def test_a_member_the_manifest_does_not_list_is_refused():
    images = {"images/p1-0.png": png()}
    members = {"manifest.json": json.dumps(manifest(images)), **images, "../../etc/passwd": b"x"}
    with pytest.raises(BundleError, match="which its manifest does not list"):
        bundles.read(raw_zip(members), MAX)


def test_a_zip_bomb_is_refused_before_it_inflates():
    images = {"images/p1-0.png": b"\0" * (8 * 1024 * 1024)}
    members = {"manifest.json": json.dumps(manifest({"images/p1-0.png": png()})), **images}
    with pytest.raises(BundleError, match="zip bomb"):
        bundles.read(raw_zip(members), MAX)


def test_a_huge_manifest_is_refused():
    huge = json.dumps({"format": bundles.FORMAT, "pad": "x" * (bundles.MANIFEST_MAX_BYTES + 10)})
    with pytest.raises(BundleError, match="manifest.json is larger than"):
        bundles.read(raw_zip({"manifest.json": huge}, zipfile.ZIP_STORED), MAX)


def test_a_manifest_that_is_not_json_is_refused():
    with pytest.raises(BundleError, match="not JSON"):
        bundles.read(raw_zip({"manifest.json": "{nope"}), MAX)


def test_a_bundle_without_manifest_is_refused():
    with pytest.raises(BundleError, match="no manifest.json"):
        bundles.read(raw_zip({"images/p1-0.png": png()}), MAX)


def test_a_bundle_past_the_limit_is_refused():
    with pytest.raises(BundleError, match="larger than 0 MB"):
        bundles.read(good(), 100)


def test_the_pixel_hash_ignores_how_the_png_was_saved():
    plain, squeezed = png(), png(compress_level=9, optimize=True)
    assert plain != squeezed
    assert bundles.pixel_hash(plain) == bundles.pixel_hash(squeezed)
    assert bundles.pixel_hash(png(color=(201, 40, 40))) != bundles.pixel_hash(plain)


def test_verdicts_identical_close_different():
    base = png(color=(100, 100, 100))
    assert bundles.verdict(bundles.pixel_hash(base), base, png(compress_level=9, color=(100, 100, 100)), 0.02) == (
        "identical",
        0.0,
    )
    verdict, distance = bundles.verdict(bundles.pixel_hash(base), base, png(color=(102, 100, 100)), 0.02)
    assert verdict == "close" and 0 < distance < 0.02
    verdict, distance = bundles.verdict(bundles.pixel_hash(base), base, png(color=(250, 10, 10)), 0.02)
    assert verdict == "different" and distance > 0.2
    assert bundles.verdict(bundles.pixel_hash(base), base, png(size=(8, 8)), 0.02) == ("different", 1.0)
