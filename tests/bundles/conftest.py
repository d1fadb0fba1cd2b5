"""The page tests' versions and predictions (tests/web/conftest.py), and
helpers to read and make bundles."""

import io
import json
import zipfile

import pytest

from tests.e2e.conftest import second_cog_server, two_versions  # noqa: F401 (fixtures)
from tests.web.conftest import client_alice, sd_version, turbo_version  # noqa: F401 (fixtures)


@pytest.fixture
def queued_here(queued):
    """Predictions are recorded, not sent (tests/conftest.py's `queued`)."""
    return queued


def unzip(data):
    """(manifest, {name: bytes}) of a bundle's bytes."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = archive.namelist()
        return json.loads(archive.read("manifest.json")), {n: archive.read(n) for n in names if n != "manifest.json"}
